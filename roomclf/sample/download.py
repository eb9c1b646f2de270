"""Getting a sample corpus: a few whole batches of public listing-style photos, laid out as a crawl.

The photos to get are listed in the package's sample manifest
(``roomclf/sample/manifest.csv``, see :mod:`roomclf.sample.manifest`): for each,
its place in the crawl, its labels, and a raw GitHub URL at a pinned commit with
the file's SHA-256 and size. They are downloaded concurrently and every file is
checked against its SHA-256 and size before it is moved into place (a temporary
file, then an atomic rename): nothing is trusted on first use. A rerun checks
what is there and fetches only what is missing or wrong, so an interrupted
download resumes. Transient failures (timeouts, dropped connections, HTTP 5xx and
429) are retried with backoff; files that cannot be had (HTTP 404, a wrong hash)
are reported and left out, and the sample is made of the rest:
``OUT/listings/batch_XX/listing_NNNN/photo_NN.jpg`` plus ``OUT/labels.csv``
(``path,label,subtype,source,upstream``) and ``OUT/attributes.csv`` (the attribute
labels of the manifest's ``NAME.attributes.csv``) for the photos that landed.

Environment:

- ``ROOMCLF_SAMPLE_SOURCE``: an existing corpus (a folder holding ``listings/batch_*``
  or ``batch_*``, with a ``labels.csv``; or an ``s3://bucket/prefix`` laid out the same way,
  read through ``roomclf.storage``) used in place instead of downloading.
- ``ROOMCLF_SAMPLE_MANIFEST``: another manifest CSV (same columns; its attribute labels, if any,
  in ``NAME.attributes.csv`` beside it).
- ``ROOMCLF_SAMPLE_URL_PREFIX``: replaces each URL's scheme and host (e.g. a mirror,
  or ``http://127.0.0.1:8000`` in tests); the path is kept.
"""
from __future__ import annotations

import csv
import hashlib
import http.client
import os
import random
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from roomclf import storage
from roomclf.errors import RoomclfError
from roomclf.sample.manifest import (
    MANIFEST,
    Entry,
    attributes_file,
    load,
    write_attributes,
)

USER_AGENT = "roomclf-sample-data/0.1"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_WAIT = 30.0   # seconds, the longest pause between two tries


class SampleDataError(RoomclfError):
    pass


class _Permanent(SampleDataError):
    """A file that retrying will not fix (404, wrong hash or size)."""


class _Transient(SampleDataError):
    """A failure worth another try (timeout, dropped connection, 5xx)."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


@dataclass
class SampleCorpus:
    root: Path | str    # the folder holding batch_* (an s3:// URI for a corpus in object storage)
    labels_csv: Path | str
    photos: int
    in_place: bool      # an existing corpus used where it lies
    fetched: int = 0    # downloaded by this call
    present: int = 0    # already there and verified
    failed: dict[str, str] = field(default_factory=dict)   # place -> why it could not be had
    wanted: int = 0     # photos the manifest lists


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _existing_corpus(src: Path | str) -> SampleCorpus | None:
    """The corpus at ``src`` (a folder or an s3:// URI: ``listings/batch_*`` or ``batch_*`` in it, with a
    ``labels.csv`` in the folder holding the batches or the one above), or None when it holds no batch."""
    for root in (storage.join(src, "listings"), src):
        batches = [d for d in storage.list_dirs(root) or () if d.startswith("batch_")]
        if batches:
            beside = [root, storage.parent(root)]
            labels = next((f for f in (storage.join(d, "labels.csv") for d in beside if d is not None)
                           if storage.is_file(f)), None)
            if labels is None:
                raise SampleDataError(f"{src} looks like a corpus but has no labels.csv beside it")
            return SampleCorpus(storage.resolve(root), storage.resolve(labels), _listing_files(root, batches),
                                in_place=True)
    return None


def _listing_files(root: Path | str, batches: list[str]) -> int:
    """How many files lie in the listings of ``batches`` (``batch/listing/name``)."""
    return sum(1 for batch in batches for rel in storage.walk_files(storage.join(root, batch)) if rel.count("/") == 1)


def source_url(url: str, prefix: str | None = None) -> str:
    """``url`` with its scheme and host replaced by ``prefix`` (default: $ROOMCLF_SAMPLE_URL_PREFIX)."""
    prefix = os.environ.get("ROOMCLF_SAMPLE_URL_PREFIX", "") if prefix is None else prefix
    if not prefix:
        return url
    parts = urlsplit(url)
    return prefix.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _verified(path: Path, entry: Entry) -> bool:
    try:
        return path.stat().st_size == entry.size and sha256(path) == entry.sha256
    except OSError:
        return False


class _Fetcher:
    """Downloads one manifest entry at a time, safely from many threads."""

    def __init__(self, listings: Path, timeout: float, retries: int, backoff: float, stop: threading.Event):
        self.listings, self.timeout, self.retries, self.backoff, self.stop = listings, timeout, retries, backoff, stop
        self.opener = urllib.request.build_opener()
        self.opener.addheaders = [("User-Agent", USER_AGENT)]

    def ensure(self, entry: Entry) -> str:
        """'present' or 'fetched'; raises _Permanent / _Transient with the reason otherwise."""
        dest = self.listings / entry.path
        if _verified(dest, entry):
            return "present"
        dest.unlink(missing_ok=True)   # a damaged or foreign file is never left where a photo belongs
        url = source_url(entry.url)
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise _Permanent("interrupted")
            try:
                self._fetch(url, dest, entry)
                return "fetched"
            except _Transient as exc:
                if attempt == self.retries:
                    raise _Transient(f"{exc} (gave up after {self.retries + 1} tries)") from None
                wait = exc.wait if exc.wait is not None else self.backoff * 2 ** attempt
                self.stop.wait(min(MAX_WAIT, wait) * random.uniform(1.0, 1.25))
        raise AssertionError("unreachable")

    def _fetch(self, url: str, dest: Path, entry: Entry) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            h, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out, self._open(url) as resp:
                while True:
                    if self.stop.is_set():
                        raise _Permanent("interrupted")
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    size += len(block)
                    if size > entry.size:
                        raise _Permanent(f"size mismatch (more than the expected {entry.size} bytes)")
                    h.update(block)
                    out.write(block)
            if size != entry.size:
                raise _Permanent(f"size mismatch ({size} bytes, expected {entry.size})")
            if h.hexdigest() != entry.sha256:
                raise _Permanent(f"sha256 mismatch ({h.hexdigest()[:12]}..., expected {entry.sha256[:12]}...)")
            os.replace(tmp, dest)
        except (socket.timeout, TimeoutError):
            raise _Transient(f"timed out after {self.timeout:g}s") from None
        except (http.client.HTTPException, ConnectionError) as exc:
            raise _Transient(f"connection broke ({type(exc).__name__})") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _open(self, url: str):
        try:
            return self.opener.open(url, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in RETRY_STATUS:
                after = exc.headers.get("Retry-After", "") if exc.headers else ""
                raise _Transient(f"HTTP {exc.code}", float(after) if after.isdigit() else None) from None
            if exc.code == 404:
                raise _Permanent("missing (HTTP 404)") from None
            raise _Permanent(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Transient(f"timed out after {self.timeout:g}s") from None
            raise _Transient(f"cannot connect ({reason})") from None
        except (socket.timeout, TimeoutError):
            raise _Transient(f"timed out after {self.timeout:g}s") from None
        except (http.client.HTTPException, ConnectionError) as exc:
            raise _Transient(f"connection broke ({type(exc).__name__})") from None
        except ValueError as exc:    # not a URL urllib can open: the manifest or the prefix is wrong
            raise SampleDataError(f"cannot download {url}: {exc} (check ROOMCLF_SAMPLE_URL_PREFIX)") from None


def _clean_partials(listings: Path) -> None:
    """Temporary files a killed run left behind."""
    if listings.is_dir():
        for part in listings.glob("batch_*/*/.*.part"):
            part.unlink(missing_ok=True)


def _write_labels(out: Path, entries: list[Entry], got: set[str]) -> Path:
    path = out / "labels.csv"
    tmp = out / ".labels.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "label", "subtype", "source", "upstream"])
        for e in entries:
            if e.path in got:
                w.writerow([e.path, e.label, e.subtype, e.source, e.url])
    os.replace(tmp, path)
    return path


def _write_attributes(out: Path, source: Path, got: set[str]) -> Path | None:
    """``out/attributes.csv``: the manifest's attribute labels of the photos that landed (none: no file)."""
    if not source.is_file():
        return None
    with open(source, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("path") in got]
    return write_attributes(rows, out / "attributes.csv")


def download_sample(out: str | os.PathLike, manifest: str | os.PathLike | None = None, jobs: int = 8,
                    timeout: float = 60.0, retries: int = 4, backoff: float = 0.5,
                    progress: bool = True) -> SampleCorpus:
    """Get every photo of the manifest into ``out`` (verified), and write ``out/labels.csv`` for those that landed."""
    from tqdm.auto import tqdm

    manifest_path = Path(manifest or os.environ.get("ROOMCLF_SAMPLE_MANIFEST") or MANIFEST)
    entries = load(manifest_path)
    prefix = os.environ.get("ROOMCLF_SAMPLE_URL_PREFIX", "")
    if prefix and not (urlsplit(prefix).scheme in ("http", "https") and urlsplit(prefix).netloc):
        raise SampleDataError(f"ROOMCLF_SAMPLE_URL_PREFIX={prefix}: expected http(s)://HOST[:PORT]")
    out = Path(out)
    listings = out / "listings"
    listings.mkdir(parents=True, exist_ok=True)
    _clean_partials(listings)
    stop = threading.Event()
    fetcher = _Fetcher(listings, timeout, retries, backoff, stop)
    got: set[str] = set()
    failed: dict[str, str] = {}
    counts = {"present": 0, "fetched": 0}
    unreachable = 0
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="sample-data")
    try:
        futures = {pool.submit(fetcher.ensure, e): e for e in entries}
        with tqdm(total=len(entries), desc="sample photos", unit="photo", disable=not progress,
                  file=sys.stderr) as bar:
            for fut in as_completed(futures):
                entry = futures[fut]
                try:
                    counts[fut.result()] += 1
                    got.add(entry.path)
                except (_Permanent, _Transient) as exc:
                    failed[entry.path] = f"{exc} <{source_url(entry.url)}>"
                    if isinstance(exc, _Transient):
                        unreachable += 1
                    if not got and unreachable >= min(jobs, len(entries)):   # offline: say so now, not in an hour
                        raise SampleDataError(
                            f"cannot download the sample: {unreachable} photos failed and none came ({exc}); "
                            "with no internet, set ROOMCLF_SAMPLE_SOURCE to an existing corpus folder")
                except OSError as exc:   # the destination cannot be written: that is not the source's fault
                    raise SampleDataError(f"cannot write {listings / entry.path}: {exc.strerror or exc}") from None
                bar.update(1)
                bar.set_postfix(failed=len(failed), refresh=False)
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if not got:
        first = next(iter(failed.values()), "nothing listed")
        raise SampleDataError(f"could not download any of the {len(entries)} sample photos (e.g. {first}); "
                              "with no internet, set ROOMCLF_SAMPLE_SOURCE to an existing corpus folder")
    labels = _write_labels(out, entries, got)
    _write_attributes(out, attributes_file(manifest_path), got)
    return SampleCorpus(listings.resolve(), labels.resolve(), len(got), in_place=False, fetched=counts["fetched"],
                        present=counts["present"], failed=dict(sorted(failed.items())), wanted=len(entries))


def describe(corpus: SampleCorpus, show: int = 10) -> list[str]:
    """Lines telling what happened, failures included (at most ``show`` of them one by one)."""
    if corpus.in_place:
        return [f"{corpus.photos} photos used in place at {corpus.root}; labels: {corpus.labels_csv}"]
    lines = [f"{corpus.photos} of {corpus.wanted} sample photos at {corpus.root} ({corpus.fetched} downloaded, "
             f"{corpus.present} already there, all verified by SHA-256); labels: {corpus.labels_csv}"]
    if corpus.failed:
        lines.append(f"could not get {len(corpus.failed)} photos (left out of labels.csv; run again to retry):")
        lines += [f"  {p}: {why}" for p, why in list(corpus.failed.items())[:show]]
        if len(corpus.failed) > show:
            lines.append(f"  ... and {len(corpus.failed) - show} more")
    return lines


def get_sample_corpus(out: str | os.PathLike, source: str | None = None, manifest: str | os.PathLike | None = None,
                      *, jobs: int = 8, timeout: float = 60.0, retries: int = 4, progress: bool = True,
                      echo: Callable[[str], None] | None = None) -> SampleCorpus:
    """The sample corpus: ``source`` (or $ROOMCLF_SAMPLE_SOURCE), an existing corpus (a folder or an s3:// URI)
    used in place, else the
    manifest's photos downloaded and verified into ``out`` (a rerun fetches only what is missing).

    ``echo``: where to tell what happened; without it, only the photos that could not be had are
    reported (on stderr)."""
    source = source or os.environ.get("ROOMCLF_SAMPLE_SOURCE") or ""
    if source:
        src = storage.resolve(source) if storage.is_uri(source) else Path(source).expanduser()
        found = _existing_corpus(src) if storage.is_uri(src) or src.is_dir() else None
        if found is None:
            raise SampleDataError(f"ROOMCLF_SAMPLE_SOURCE={source}: not a corpus (a folder or s3://bucket/prefix "
                                  "holding listings/batch_* or batch_*, with a labels.csv)")
        if echo is not None:
            echo(describe(found)[0])
        return found
    corpus = download_sample(out, manifest, jobs=jobs, timeout=timeout, retries=retries, progress=progress)
    if echo is not None:
        for line in describe(corpus):
            echo(line)
    elif corpus.failed:   # the caller tells the rest; the failures are said here, on stderr
        for line in describe(corpus)[1:]:
            print(line, file=sys.stderr)
    return corpus
