"""Finding the photos of a crawl laid out as ``ROOT/batch_*/<listing>/<photo>``.

A photo is identified everywhere by its path relative to ROOT, with forward
slashes (``batch_01/listing_0003/photo_01.jpg``). Files that are not photos by
their extension are counted as skipped, never as errors. ROOT is a local folder
or an ``s3://bucket/prefix`` URI: it is listed through ``roomclf.storage``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from roomclf import storage
from roomclf.errors import RoomclfError
from roomclf.photos import PHOTO_EXTENSIONS


class CorpusError(RoomclfError, ValueError):
    """A corpus root or batch that does not exist or holds nothing."""


@dataclass(frozen=True)
class Photo:
    path: str      # relative to the corpus root
    batch: str
    listing: str


@dataclass
class Corpus:
    root: Path | str     # an absolute local folder, or an s3://bucket/prefix URI
    photos: list[Photo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # relative paths of non-photo files

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.photos]


def is_photo_name(name: str) -> bool:
    return name.lower().endswith(PHOTO_EXTENSIONS) and not name.startswith("._")


def list_batches(root: str | os.PathLike) -> list[str]:
    folders = storage.list_dirs(root if storage.is_uri(root) else Path(root))
    if folders is None:
        raise CorpusError(f"corpus root not found: {root if storage.is_uri(root) else Path(root)}")
    return [name for name in folders if name.startswith("batch_")]


BATCH_SPEC_FORMS = "batch_NN, a number, batch_NN-batch_MM, a comma-separated list of these, or 'all'"


def _batch_name(item: str, root, available: list[str]) -> str:
    """'batch_03', '3' or '03' -> 'batch_03', which must be a batch of the corpus; else a one-line error."""
    if item.isdigit():
        name = f"batch_{int(item):02d}"
    elif item.startswith("batch_") and "/" not in item and "\\" not in item:
        name = item
    else:
        raise CorpusError(f"bad batch {item!r}: use {BATCH_SPEC_FORMS}")
    if name not in available:
        raise CorpusError(f"batch {name} not found under {root} (have {len(available)} batches: "
                          f"{available[0]}..{available[-1]})")
    return name


def parse_batches(spec: str | list[str] | tuple[str, ...] | None, root: str | os.PathLike) -> list[str]:
    """The one batch-spec parser of every command: 'batch_01,batch_03', 'batch_01-batch_03', '5' or
    'all'/None (or a list of such items) -> the batch names, each checked to exist under ``root``.

    An ill-formed spec or a batch the corpus lacks (a range's ends included) raises ``CorpusError``.
    """
    available = list_batches(root)
    if not available:
        raise CorpusError(f"no batch_* folders under {root}")
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        return available
    raw = list(spec) if isinstance(spec, (list, tuple)) else spec.split(",")
    items = [str(s).strip() for s in raw if str(s).strip()]
    if not items:
        raise CorpusError(f"bad batch spec {spec!r}: use {BATCH_SPEC_FORMS}")
    chosen: list[str] = []
    for item in items:
        if item == "all":
            chosen += available
        elif "-" in item:
            lo, _, hi = item.partition("-")
            if not (lo.startswith("batch_") and hi.startswith("batch_")) or "-" in hi:
                raise CorpusError(f"bad batch range {item!r}: use {BATCH_SPEC_FORMS}")
            lo, hi = _batch_name(lo, root, available), _batch_name(hi, root, available)
            if lo > hi:
                raise CorpusError(f"bad batch range {item!r}: {lo} comes after {hi}")
            chosen += [b for b in available if lo <= b <= hi]
        else:
            chosen.append(_batch_name(item, root, available))
    return list(dict.fromkeys(chosen))


def discover(root: str | os.PathLike, batches: str | list[str] | None = None) -> Corpus:
    """List the photos (and skipped files) of the given batches, in a stable order."""
    root = storage.resolve(root)
    corpus = Corpus(root=root)
    for batch in parse_batches(batches, root):
        for rel in storage.walk_files(storage.join(root, batch)):
            rel = f"{batch}/{rel}"
            parts = rel.split("/")
            if is_photo_name(parts[-1]) and len(parts) >= 3:
                corpus.photos.append(Photo(path=rel, batch=parts[0], listing=parts[1]))
            else:
                corpus.skipped.append(rel)
    return corpus


def path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a photo path in its one canonical form (relative to the corpus root, forward
    slashes, no empty, '.' or '..' parts), or None when it is. Two spellings of one photo would be two
    photos to the label store, and the first part names the batch the train/validation split uses."""
    if not rel:
        return "empty path"
    if "\x00" in rel:
        return "a NUL character"
    if "\\" in rel:
        return "a backslash (use forward slashes)"
    if rel.startswith("/") or (len(rel) > 1 and rel[0].isalpha() and rel[1] == ":"):
        return "an absolute path (give it relative to the corpus root)"
    parts = rel.split("/")
    if "" in parts:
        return "an empty part (a double or trailing slash)"
    if "." in parts or ".." in parts:
        return "a '.' or '..' part"
    if rel != rel.strip():
        return "leading or trailing spaces"
    return None


def safe_join(root: str | os.PathLike, rel: str) -> Path | str | None:
    """``root/rel`` if it stays inside root (no '..', absolute path or symlink escape), else None. For an
    ``s3://`` root (keys are plain names: no symlinks) the joined URI, when no part of ``rel`` is empty,
    '.' or '..'."""
    if not rel or rel.startswith(("/", "\\")) or "\x00" in rel:
        return None
    if storage.is_uri(root):
        parts = rel.split("/")
        return None if "\\" in rel or {"", ".", ".."} & set(parts) else storage.join(root, rel)
    root = Path(root).resolve()
    candidate = (root / rel).resolve()
    try:
        candidate.relative_to(root)
    except ValueError:
        return None
    return candidate
