"""Finding the photos of a crawl laid out as ``ROOT/batch_*/<listing>/<photo>``.

A photo is identified everywhere by its path relative to ROOT, with forward
slashes (``batch_01/listing_0003/photo_01.jpg``). Files that are not photos by
their extension are counted as skipped, never as errors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    root: Path
    photos: list[Photo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # relative paths of non-photo files

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.photos]


def is_photo_name(name: str) -> bool:
    return name.lower().endswith(PHOTO_EXTENSIONS) and not name.startswith("._")


def list_batches(root: str | os.PathLike) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"corpus root not found: {root}")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.name.startswith("batch_"))


def _batch_name(item: str) -> str:
    """'3' or '03' -> 'batch_03'; anything else is a one-line error."""
    if not item.isdigit():
        raise CorpusError(f"bad batch {item!r}: use batch_NN, a number, batch_NN-batch_MM or 'all'")
    return f"batch_{int(item):02d}"


def parse_batches(spec: str | list[str] | tuple[str, ...] | None, root: str | os.PathLike) -> list[str]:
    """'batch_01,batch_03' or 'batch_01-batch_03' or 'all'/None -> validated batch names."""
    available = list_batches(root)
    if spec is None or spec == "" or spec == "all":
        if not available:
            raise CorpusError(f"no batch_* folders under {root}")
        return available
    items = spec if isinstance(spec, (list, tuple)) else [s.strip() for s in spec.split(",") if s.strip()]
    chosen: list[str] = []
    for item in items:
        if "-" in item and item.count("batch_") == 2:
            lo, hi = item.split("-")
            span = [b for b in available if lo <= b <= hi]
            if not span:
                raise CorpusError(f"no batches in range {item}")
            chosen += span
        else:
            name = item if item.startswith("batch_") else _batch_name(item)
            if name not in available:
                raise CorpusError(f"batch {name} not found under {root} (have {len(available)} batches)")
            chosen.append(name)
    return list(dict.fromkeys(chosen))


def discover(root: str | os.PathLike, batches: str | list[str] | None = None) -> Corpus:
    """List the photos (and skipped files) of the given batches, in a stable order."""
    root = Path(root).resolve()
    corpus = Corpus(root=root)
    for batch in parse_batches(batches, root):
        for dirpath, dirnames, filenames in os.walk(root / batch):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root)
            for name in sorted(filenames):
                rel = (rel_dir / name).as_posix()
                parts = rel.split("/")
                if is_photo_name(name) and len(parts) >= 3:
                    corpus.photos.append(Photo(path=rel, batch=parts[0], listing=parts[1]))
                else:
                    corpus.skipped.append(rel)
    return corpus


def safe_join(root: str | os.PathLike, rel: str) -> Path | None:
    """``root/rel`` if it stays inside root (no '..', absolute path or symlink escape), else None."""
    if not rel or rel.startswith(("/", "\\")) or "\x00" in rel:
        return None
    root = Path(root).resolve()
    candidate = (root / rel).resolve()
    try:
        candidate.relative_to(root)
    except ValueError:
        return None
    return candidate
