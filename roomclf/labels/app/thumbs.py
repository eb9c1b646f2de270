"""Thumbnails made once and kept on disk, so a grid page of them loads fast.

A thumbnail's file name is a hash of the photo's absolute path (or s3:// URI), its
size and mtime (``roomclf.storage.cache_key``) and of the thumbnail size: a changed
photo gets a new thumbnail, and a thumbnail is written aside and renamed into place,
so a reader never sees half a file (two requests for the same cold thumbnail both
just write it).
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from roomclf import storage
from roomclf.photos import PhotoError, thumbnail

SIZES = {"small": 256, "large": 1024}


def cache_dir() -> Path:
    from roomclf.settings import home

    return home() / "thumbs"


class ThumbCache:
    def __init__(self, folder: str | os.PathLike | None = None, quality: int = 85):
        self.folder = Path(folder) if folder else cache_dir()
        self.quality = quality

    def location(self, photo: Path | str, size: int) -> Path:
        nbytes, mtime_ns = storage.cache_key(photo)
        key = hashlib.sha1(f"{photo}|{nbytes}|{mtime_ns}|{size}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.jpg"

    def get(self, photo: str | os.PathLike, size: int = SIZES["small"]) -> Path:
        """The cached JPEG thumbnail of ``photo`` (made now if missing); PhotoError if unreadable."""
        photo = photo if storage.is_uri(photo) else Path(photo)
        out = self.location(photo, size)
        if out.is_file():
            return out
        img = thumbnail(photo, size)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        img.save(tmp, "JPEG", quality=self.quality)
        os.replace(tmp, out)
        return out

    def warm(self, photos: list[Path | str], size: int = SIZES["small"]) -> int:
        """Make the missing thumbnails of ``photos`` (unreadable ones are left out); returns how many were made."""
        made = 0
        for photo in photos:
            try:
                if not self.location(photo, size).is_file():
                    self.get(photo, size)
                    made += 1
            except (PhotoError, OSError):
                continue
        return made
