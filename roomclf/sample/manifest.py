"""The sample manifest: which public photos make up the downloadable sample crawl.

``roomclf/sample/manifest.csv`` (shipped in the package) lists, for a few whole
batches of the project's corpus, every photo whose public upstream file is known:
where it goes in the crawl (``path``), its labels (``label``, ``subtype``,
``source``), and where to get it: a raw GitHub URL at a full, pinned commit, with
the upstream file's SHA-256 and size. ``roomclf sample-data`` downloads exactly
those bytes and checks them; nothing is trusted on first use.

Beside it, ``manifest.attributes.csv`` holds the corpus's attribute labels of those
photos (``path,attribute,value,method``, as ``attributes.csv``); the download writes
the rows of the photos that landed to ``OUT/attributes.csv``.

The manifest is built from the corpus's ``labels.csv``, ``upstream.csv`` and ``attributes.csv``::

    python -m roomclf.sample.manifest                      # ../shared/data, batch_01-batch_04
    python -m roomclf.sample.manifest --data DIR --batches batch_01,batch_05 --out my.csv

A photo lands as the upstream file, as it is (several corpus copies were shrunk,
so a downloaded photo can be larger than the corpus's). Photos without upstream
information or without a label are left out.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from roomclf.errors import RoomclfError

MANIFEST = Path(__file__).with_name("manifest.csv")
ATTRIBUTE_COLUMNS = ("path", "attribute", "value", "method")
DEFAULT_BATCHES = "batch_01-batch_04"
RAW_HOST = "https://raw.githubusercontent.com"
COLUMNS = ("path", "label", "subtype", "source", "sha256", "size", "url")

# The public repositories the corpus's photos come from, at the commits it was built from.
PINNED_COMMITS = {
    "emanhamed/Houses-dataset": "5e148219500558089cf5cf121b626b17fdde9b92",
    "kidademoraisaly/house_room_classifier": "e9d8095577688583b340ba060807c58f468cf853",
    "SilviuBR24/room-classification": "0eca0b20ccf85e0278dcf88f887e320ff4cfa426",
    "rathull/CTFs": "f35c219885f163ca00a045236dd44be489598837",
    "chad-hub/homeland-obscurity": "656fe90a4081f289419f6e51a39112de2539b87f",
}

PLACE = re.compile(r"^batch_\d+/listing_\d+/photo_\d+\.[a-z0-9]+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(RoomclfError):
    pass


@dataclass(frozen=True)
class Entry:
    path: str        # place in the crawl: batch_XX/listing_NNNN/photo_NN.ext
    label: str
    subtype: str
    source: str
    sha256: str      # of the upstream file
    size: int        # bytes of the upstream file
    url: str         # raw GitHub URL at a full commit

    @property
    def batch(self) -> str:
        return self.path.split("/", 1)[0]


def raw_url(repo: str, commit: str, repo_path: str) -> str:
    """The raw GitHub URL of ``repo_path`` in ``repo`` at ``commit``, URL-quoted."""
    return f"{RAW_HOST}/{repo}/{commit}/{quote(repo_path, safe='/')}"


def _batch_names(spec: str, available: list[str]) -> list[str]:
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if "-" in item:
            lo, hi = item.split("-", 1)
            span = [b for b in available if lo <= b <= hi]
        else:
            span = [item] if item in available else []
        if not span:
            raise ManifestError(f"no batch matches {item!r} (have {available[0]}..{available[-1]})")
        chosen += span
    return list(dict.fromkeys(chosen))


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise ManifestError(f"{path} not found")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def build(data: str | os.PathLike, batches: str = DEFAULT_BATCHES, per_class: int | None = None,
          identical_only: bool = False, seed: int = 0) -> list[Entry]:
    """Manifest entries for ``batches`` of the corpus at ``data`` (holding labels.csv and upstream.csv).

    ``per_class``: keep at most that many photos of each class per batch (a smaller sample).
    ``identical_only``: keep only photos whose corpus copy is byte-identical to the upstream
    file (so the corpus copy can stand in for the download, as the tests do).
    """
    data = Path(data)
    labels = {r["path"]: r for r in _read_csv(data / "labels.csv")}
    upstream = _read_csv(data / "upstream.csv")
    available = sorted({r["path"].split("/", 1)[0] for r in upstream})
    if not available:
        raise ManifestError(f"{data / 'upstream.csv'} lists no photos")
    wanted = set(_batch_names(batches, available))
    entries = []
    for up in upstream:
        row = labels.get(up["path"])
        if row is None or not row.get("label") or up["path"].split("/", 1)[0] not in wanted:
            continue
        if not (up.get("repo") and up.get("commit") and up.get("repo_path") and up.get("sha256") and up.get("size")):
            continue
        if identical_only and up.get("identical") != "1":
            continue
        pinned = PINNED_COMMITS.get(up["repo"])
        if pinned is None or up["commit"] != pinned:
            raise ManifestError(f"{up['path']}: {up['repo']}@{up['commit']} is not one of the pinned commits")
        place = PurePosixPath(up["path"])
        suffix = PurePosixPath(up["repo_path"]).suffix.lower() or place.suffix
        entries.append(Entry(str(place.with_suffix(suffix)), row["label"], row.get("subtype", ""),
                             row.get("source", ""), up["sha256"].lower(), int(up["size"]),
                             raw_url(up["repo"], up["commit"], up["repo_path"])))
    if per_class is not None:
        rng = random.Random(seed)
        groups: dict[tuple[str, str], list[Entry]] = {}
        for e in entries:
            groups.setdefault((e.batch, e.label), []).append(e)
        entries = [e for group in groups.values() for e in rng.sample(group, min(per_class, len(group)))]
    entries.sort(key=lambda e: e.path)
    if not entries:
        raise ManifestError(f"no photo of {batches} has upstream information in {data}")
    return entries


def write(entries: list[Entry], out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for e in entries:
            w.writerow([e.path, e.label, e.subtype, e.source, e.sha256, e.size, e.url])
    os.replace(tmp, out)
    return out


def attributes_file(manifest: str | os.PathLike) -> Path:
    """The attribute labels that go with a manifest: ``NAME.attributes.csv`` beside ``NAME.csv``."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.attributes.csv")


def build_attributes(data: str | os.PathLike, entries: list[Entry]) -> list[dict]:
    """The corpus's attribute labels (``data/attributes.csv``) of the manifest's photos, at their sample places."""
    source = Path(data) / "attributes.csv"
    if not source.is_file():
        return []
    place = {str(PurePosixPath(e.path).with_suffix("")): e.path for e in entries}
    rows = []
    for r in _read_csv(source):
        path = place.get(str(PurePosixPath((r.get("path") or "").strip()).with_suffix("")))
        if path:
            rows.append({"path": path, **{k: (r.get(k) or "").strip() for k in ATTRIBUTE_COLUMNS[1:]}})
    rows.sort(key=lambda r: (r["path"], r["attribute"]))
    return rows


def write_attributes(rows: list[dict], out: str | os.PathLike) -> Path:
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, ATTRIBUTE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)
    return out


def load(path: str | os.PathLike | None = None) -> list[Entry]:
    """Read and check a manifest (the shipped one by default)."""
    path = Path(path) if path else MANIFEST
    rows = _read_csv(path)
    entries, seen = [], set()
    for n, r in enumerate(rows, start=2):
        try:
            e = Entry(r["path"].strip(), r["label"].strip(), (r.get("subtype") or "").strip(),
                      (r.get("source") or "").strip(), r["sha256"].strip().lower(), int(r["size"]), r["url"].strip())
        except (KeyError, ValueError, AttributeError):
            raise ManifestError(f"{path}:{n}: expected columns {','.join(COLUMNS)}") from None
        if not PLACE.match(e.path) or e.path in seen:
            raise ManifestError(f"{path}:{n}: bad or repeated place {e.path!r}")
        if not SHA256.match(e.sha256) or e.size <= 0 or not e.url.startswith(("https://", "http://")):
            raise ManifestError(f"{path}:{n}: bad sha256, size or url")
        seen.add(e.path)
        entries.append(e)
    if not entries:
        raise ManifestError(f"{path} lists no photos")
    return entries


def main(argv: list[str] | None = None) -> int:
    from roomclf.settings import project_root
    from roomclf.taxonomy import CLASSES

    ap = argparse.ArgumentParser(prog="python -m roomclf.sample.manifest", description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("ROOMCLF_TEST_DATA") or str(project_root().parent / "shared" / "data")
    ap.add_argument("--data", default=default_data,
                    help="the corpus folder holding labels.csv and upstream.csv (default: ../shared/data)")
    ap.add_argument("--batches", default=DEFAULT_BATCHES, help=f"whole batches to ship (default: {DEFAULT_BATCHES})")
    ap.add_argument("--per-class", type=int, default=None, help="at most N photos of each class per batch")
    ap.add_argument("--out", default=str(MANIFEST), help="the CSV to write (default: the package's manifest)")
    args = ap.parse_args(argv)
    try:
        entries = build(args.data, args.batches, args.per_class)
        missing = sorted(set(CLASSES) - {e.label for e in entries})
        if missing:
            raise ManifestError(f"the sample lacks {', '.join(missing)}: choose other batches")
        out = write(entries, args.out)
        attributes = build_attributes(args.data, entries)
        attributes_out = write_attributes(attributes, attributes_file(out))
    except RoomclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = {c: sum(e.label == c for e in entries) for c in CLASSES}
    size = sum(e.size for e in entries) / 1e6
    print(f"{len(entries)} photos of {len({e.batch for e in entries})} batches ({size:.1f} MB) -> {out}")
    print("per class: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    print(f"{len(attributes)} attribute labels of {len({r['path'] for r in attributes})} photos -> {attributes_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
