"""Getting a sample corpus: the public Houses Dataset, laid out like a crawl.

The Houses Dataset (535 houses x 4 photos named ``<house>_<room>.jpg``:
bathroom, bedroom, frontal, kitchen) is downloaded from its public repository
as one archive, checked against a SHA-256, and laid out as
``DIR/listings/batch_NN/listing_NNNN/photo_NN.jpg`` with ``DIR/labels.csv``.

With no internet, ``$ROOMCLF_SAMPLE_SOURCE`` (or ``source=``) names a local copy
instead: the same archive (.zip/.tar.gz), a folder of ``<house>_<room>.jpg``
files, or an existing corpus (a folder holding ``listings/batch_*`` or
``batch_*``), which is used in place, never copied.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from roomclf.errors import RoomclfError

ARCHIVE_URL = "https://github.com/emanhamed/Houses-dataset/archive/refs/heads/master.zip"
# The archive's SHA-256. The repository has not changed since 2018; set ROOMCLF_SAMPLE_SHA256 to
# pin another. When empty, the first download's checksum is recorded and later ones must match it.
ARCHIVE_SHA256 = os.environ.get("ROOMCLF_SAMPLE_SHA256", "")
ROOM_OF = {"bathroom": "bathroom", "bedroom": "bedroom", "frontal": "exterior", "kitchen": "kitchen"}
PHOTO_ORDER = ("frontal", "kitchen", "bedroom", "bathroom")
LISTINGS_PER_BATCH = 50
NAME = re.compile(r"^(\d+)_(bathroom|bedroom|frontal|kitchen)\.jpe?g$", re.IGNORECASE)


class SampleDataError(RoomclfError):
    pass


@dataclass
class SampleCorpus:
    root: Path          # the folder holding batch_*
    labels_csv: Path
    photos: int
    in_place: bool      # an existing corpus used where it lies


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _existing_corpus(src: Path) -> SampleCorpus | None:
    for root in (src / "listings", src):
        if root.is_dir() and any(d.name.startswith("batch_") for d in root.iterdir() if d.is_dir()):
            labels = next((p for p in (root / "labels.csv", root.parent / "labels.csv") if p.is_file()), None)
            if labels is None:
                raise SampleDataError(f"{src} looks like a corpus but has no labels.csv beside it")
            n = sum(1 for _ in root.glob("batch_*/*/*"))
            return SampleCorpus(root.resolve(), labels.resolve(), n, in_place=True)
    return None


def _download(url: str, dst: Path) -> None:
    from tqdm.auto import tqdm

    tmp = dst.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="downloading sample corpus") as bar:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SampleDataError(f"cannot download {url} ({exc}); with no internet, set ROOMCLF_SAMPLE_SOURCE "
                              "to a local copy of the archive or to an existing corpus folder") from None
    os.replace(tmp, dst)


def _extract(archive: Path, into: Path) -> Path:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if NAME.match(Path(member).name):
                    target = into / Path(member).name
                    with z.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if member.isfile() and NAME.match(Path(member.name).name):
                    with t.extractfile(member) as src, open(into / Path(member.name).name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    else:
        raise SampleDataError(f"{archive} is neither a zip nor a tar archive")
    return into


def layout_houses(photo_dir: Path, out: Path, per_batch: int = LISTINGS_PER_BATCH) -> SampleCorpus:
    """``<house>_<room>.jpg`` files -> ``out/listings/batch_NN/listing_NNNN/photo_NN.jpg`` + labels.csv (atomically)."""
    houses: dict[int, dict[str, Path]] = {}
    for f in photo_dir.iterdir():
        m = NAME.match(f.name)
        if m:
            houses.setdefault(int(m.group(1)), {})[m.group(2).lower()] = f
    if not houses:
        raise SampleDataError(f"no <house>_<room>.jpg photos found in {photo_dir}")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sample-", dir=out))
    rows = []
    for i, house in enumerate(sorted(houses)):
        batch = f"batch_{i // per_batch + 1:02d}"
        listing = staging / "listings" / batch / f"listing_{house:04d}"
        listing.mkdir(parents=True)
        for j, room in enumerate(r for r in PHOTO_ORDER if r in houses[house]):
            rel = f"{batch}/listing_{house:04d}/photo_{j + 1:02d}.jpg"
            shutil.copyfile(houses[house][room], staging / "listings" / rel)
            rows.append((rel, ROOM_OF[room], room))
    with open(staging / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "subtype", "source"])
        w.writerows((p, lab, sub, "houses_dataset") for p, lab, sub in rows)
    for name in ("listings", "labels.csv"):
        if (out / name).exists():
            shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)
    return SampleCorpus((out / "listings").resolve(), (out / "labels.csv").resolve(), len(rows), in_place=False)


def get_sample_corpus(out: str | os.PathLike, source: str | None = None, expected_sha256: str | None = None) -> SampleCorpus:
    """Obtain the sample corpus into ``out`` (or find it in place); reruns reuse what is there."""
    out = Path(out)
    source = source or os.environ.get("ROOMCLF_SAMPLE_SOURCE") or ""
    if source and Path(source).is_dir():
        found = _existing_corpus(Path(source))
        if found:
            return found
        return layout_houses(Path(source), out)
    if (out / "labels.csv").is_file() and (out / "listings").is_dir():
        return _existing_corpus(out)  # type: ignore[return-value]
    out.mkdir(parents=True, exist_ok=True)
    if source:
        archive = Path(source)
        if not archive.is_file():
            raise SampleDataError(f"ROOMCLF_SAMPLE_SOURCE={source}: no such archive or folder")
    else:
        archive = out / "houses-dataset.zip"
        if not archive.is_file():
            _download(ARCHIVE_URL, archive)
    digest = sha256(archive)
    expected = expected_sha256 or ARCHIVE_SHA256
    record = out / "archive.sha256"
    if not expected and record.is_file():
        expected = json.loads(record.read_text()).get("sha256", "")
    if expected and digest != expected:
        raise SampleDataError(f"{archive.name}: checksum mismatch (sha256 {digest[:16]}..., expected {expected[:16]}...)")
    record.write_text(json.dumps({"archive": archive.name, "sha256": digest}))
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        return layout_houses(_extract(archive, Path(tmp)), out)
