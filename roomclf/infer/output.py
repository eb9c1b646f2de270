"""The output folder of ``infer-all``: one atomic commit per batch, and the record of what finished.

Layout under OUT::

    photos/<batch>.parquet      one row per photo of the batch
    listings/<batch>.parquet    one row per listing of the batch
    _done/<batch>.json          written last: counts, model name/version, engine, timing
    .tmp-<batch>-<pid>/         a batch being committed (removed on the next run if its process is gone)

A batch is written into its ``.tmp-`` folder, then each file is moved into
place with ``os.replace`` (atomic on one filesystem), the done record last.
A run killed at any moment leaves either the old files or the new ones, never
half a file; a batch without a done record is redone (and its files replaced),
so every photo has exactly one row.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from roomclf.processes import pid_alive

PHOTOS, LISTINGS, DONE = "photos", "listings", "_done"
TMP_PREFIX = ".tmp-"


def done_record(out: str | os.PathLike, batch: str) -> dict | None:
    """The done record of a batch, or None if it has none (or an unreadable one)."""
    path = Path(out) / DONE / f"{batch}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def photo_digest(paths: list[str]) -> str:
    """What a batch's photo list was: the SHA-256 of its sorted paths."""
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()


def is_done(out: str | os.PathLike, batch: str, model_key: str, with_embedding: bool,
            paths: list[str] | None = None) -> bool:
    """True if the batch finished with this model (and embeddings, when they are asked for) over the
    same photos (``paths``: a photo added to or removed from the batch since means it is redone)."""
    rec = done_record(out, batch)
    if not rec or rec.get("model_key") != model_key:
        return False
    if paths is not None:
        if "photo_digest" in rec and rec["photo_digest"] != photo_digest(paths):
            return False
        if "photo_digest" not in rec and rec.get("photos") != len(paths):   # a record from before digests
            return False
    if not (Path(out) / PHOTOS / f"{batch}.parquet").is_file():
        return False
    return bool(rec.get("with_embedding")) or not with_embedding


def clean_stale(out: str | os.PathLike) -> list[str]:
    """Remove the ``.tmp-`` folders left by runs that died; returns their names."""
    removed = []
    out = Path(out)
    if not out.is_dir():
        return removed
    for d in out.iterdir():
        if not d.name.startswith(TMP_PREFIX):
            continue
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d.name)
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def to_table(frame, schema):
    """A pandas DataFrame -> a pyarrow Table of exactly ``schema`` (no pandas metadata, so any reader
    gets plain types, whatever engine made the frame)."""
    import pyarrow as pa

    columns = []
    for f in schema:
        values = frame[f.name] if f.name in frame else [None] * len(frame)
        values = [None if _missing(v) else (list(v) if pa.types.is_list(f.type) else v) for v in values]
        columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _missing(value) -> bool:
    """None, NaN or pandas NA (a list or array value is never missing)."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def commit_batch(out: str | os.PathLike, batch: str, photos, listings, record: dict) -> None:
    """Write a batch's photo rows, listing rows (pyarrow Tables) and done record atomically."""
    import pyarrow.parquet as pq

    out = Path(out)
    tmp = out / f"{TMP_PREFIX}{batch}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pq.write_table(photos, tmp / "photos.parquet")
    pq.write_table(listings, tmp / "listings.parquet")
    (tmp / "done.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    for name in ("photos.parquet", "listings.parquet", "done.json"):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    moves = [(tmp / "photos.parquet", out / PHOTOS / f"{batch}.parquet"),
             (tmp / "listings.parquet", out / LISTINGS / f"{batch}.parquet"),
             (tmp / "done.json", out / DONE / f"{batch}.json")]   # the done record goes last
    for src, dst in moves:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        _fsync_dir(dst.parent)
    tmp.rmdir()


def read_photos(out: str | os.PathLike, batches: list[str] | None = None):
    """All committed photo rows (pandas), optionally of some batches only."""
    return _read(Path(out) / PHOTOS, batches)


def read_listings(out: str | os.PathLike, batches: list[str] | None = None):
    return _read(Path(out) / LISTINGS, batches)


def _read(folder: Path, batches: list[str] | None):
    import pandas as pd

    files = sorted(folder.glob("*.parquet"))
    if batches is not None:
        files = [f for f in files if f.stem in set(batches)]
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
