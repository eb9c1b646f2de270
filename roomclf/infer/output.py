"""The output folder of ``infer-all``: one commit per batch, and the record of what finished.

Layout under OUT (a local folder or an ``s3://bucket/prefix`` URI, through ``roomclf.storage``)::

    photos/<batch>.parquet      one row per photo of the batch
    listings/<batch>.parquet    one row per listing of the batch
    _done/<batch>.json          written last: counts, model name/version, engine, timing

A commit removes the batch's old done record first, then writes the two Parquet
files, then the new done record. Each file is written whole or not at all (a
local file through a temporary file renamed over it; an S3 object, which
becomes visible only once complete), and a batch counts as done only while its
done record exists. Object stores have no atomic rename of a folder, and none
is needed: a run killed at any moment leaves either a done batch or one
without a record, which the next run redoes, replacing its files, so every
photo has exactly one row.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

from roomclf import storage
from roomclf.processes import pid_alive

PHOTOS, LISTINGS, DONE = "photos", "listings", "_done"
TMP_PREFIX = ".tmp-"


def done_record(out: str | os.PathLike, batch: str) -> dict | None:
    """The done record of a batch, or None if it has none (or an unreadable one)."""
    try:
        return json.loads(storage.read_bytes(storage.join(out, DONE, f"{batch}.json")))
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
    if not storage.is_file(storage.join(out, PHOTOS, f"{batch}.parquet")):
        return False
    return bool(rec.get("with_embedding")) or not with_embedding


def clean_stale(out: str | os.PathLike) -> list[str]:
    """Remove what local runs that died left behind: ``.tmp-`` folders (of an earlier layout) and
    half-written ``.<file>.tmp-<pid>`` files; returns their paths relative to ``out``. An object store
    keeps nothing to clean: an upload that did not finish never becomes an object."""
    removed = []
    if storage.is_uri(out) or not Path(out).is_dir():
        return removed
    out = Path(out)
    candidates = [d for d in out.iterdir() if d.name.startswith(TMP_PREFIX)]
    for sub in (PHOTOS, LISTINGS, DONE):
        if (out / sub).is_dir():
            candidates += [f for f in (out / sub).iterdir() if f.name.startswith(".") and TMP_PREFIX in f.name]
    for path in candidates:
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.relative_to(out).as_posix())
    return removed


def to_table(frame, schema):
    """A pandas DataFrame -> a pyarrow Table of exactly ``schema`` (no pandas metadata, so any reader
    gets plain types, whatever engine made the frame)."""
    import pyarrow as pa

    columns = []
    for f in schema:
        if f.name not in frame:
            columns.append(pa.nulls(len(frame), type=f.type))
        elif pa.types.is_list(f.type):      # lists, numpy arrays (Ray's rows) or a missing value, one by one
            columns.append(pa.array([None if _missing(v) else list(v) for v in frame[f.name]], type=f.type))
        else:                                # None, NaN and pandas NA are nulls
            columns.append(pa.array(frame[f.name], type=f.type, from_pandas=True))
    return pa.Table.from_arrays(columns, schema=schema)


def _missing(value) -> bool:
    """None, NaN or pandas NA (a list or array value is never missing)."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def commit_batch(out: str | os.PathLike, batch: str, photos, listings, record: dict) -> None:
    """Write a batch's photo rows, listing rows (pyarrow Tables) and done record: its old done record is
    removed first and the new one written last (see the module's docstring)."""
    done = storage.join(out, DONE, f"{batch}.json")
    storage.remove(done)
    storage.write_bytes(storage.join(out, PHOTOS, f"{batch}.parquet"), _parquet_bytes(photos))
    storage.write_bytes(storage.join(out, LISTINGS, f"{batch}.parquet"), _parquet_bytes(listings))
    storage.write_bytes(done, json.dumps(record, indent=1, sort_keys=True).encode())


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def read_photos(out: str | os.PathLike, batches: list[str] | None = None):
    """All committed photo rows (pandas), optionally of some batches only."""
    return _read(storage.join(out, PHOTOS), batches)


def read_listings(out: str | os.PathLike, batches: list[str] | None = None):
    return _read(storage.join(out, LISTINGS), batches)


def _read(folder, batches: list[str] | None):
    import pandas as pd

    names = [n for n in storage.list_files(folder) if n.endswith(".parquet")]
    if batches is not None:
        names = [n for n in names if n[:-len(".parquet")] in set(batches)]
    if not names:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(folder, n)))) for n in names],
                     ignore_index=True)
