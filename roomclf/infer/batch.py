"""The plain functions both infer-all engines share, one batch of photos at a time.

* ``decode_batch``: relative paths -> the model inputs of the readable photos
  (``photos.model_inputs``, the one batch loader) and an error per photo that
  cannot be read;
* ``predict_batch``: a decoded batch -> one row per photo (class, probabilities,
  tags, optional embedding, model name/version, node, error), via ``OnnxModel``;
* ``row_schema``: the Parquet schema of those rows.

Both run where the photos are read: the loop engine calls them in its threads,
the Ray engine in its actors (``roomclf.infer.ray_engine``), so no pixels travel
between processes. Neither engine imports the other.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from roomclf.errors import RoomclfError
from roomclf.photos import model_inputs
from roomclf.storage import join
from roomclf.taxonomy import CLASSES

LOCAL_NODE = "local"


class InferError(RoomclfError):
    """Bad input to infer-all (model, engine, cluster address)."""


def decode_batch(batch: dict, root: str, size: int) -> dict:
    """{'path', 'batch', 'listing'} columns -> the same plus 'error' (per photo, '' when fine) and 'inputs'
    (float32 N x 3 x size x size: the readable photos only, in order). ``root``: a local folder or an ``s3://``
    URI; the photos are read where this runs (on a Ray worker, there). Object storage that cannot be used as
    configured (credentials, bucket) stops the run: ``StorageError``."""
    paths = list(batch["path"])
    arrays, _, unreadable = model_inputs([join(root, rel) for rel in paths], size)
    errors = [unreadable[i].reason if i in unreadable else "" for i in range(len(paths))]
    return {"path": np.asarray(paths, dtype=object), "batch": np.asarray(list(batch["batch"]), dtype=object),
            "listing": np.asarray(list(batch["listing"]), dtype=object), "error": np.asarray(errors, dtype=object),
            "inputs": np.stack(arrays) if arrays else np.zeros((0, 3, size, size), np.float32)}


def row_columns(with_embedding: bool) -> list[str]:
    cols = (["batch", "listing", "path", "label", "confidence"] + [f"prob_{c}" for c in CLASSES]
            + ["tags", "tag_probs"])
    return cols + (["embedding"] if with_embedding else []) + ["model_name", "model_version", "node", "error"]


def row_schema(with_embedding: bool):
    """The Parquet schema of the per-photo rows."""
    import pyarrow as pa

    types = {"confidence": pa.float64(), "tags": pa.list_(pa.string()), "embedding": pa.list_(pa.float32()),
             **{f"prob_{c}": pa.float64() for c in CLASSES}}
    return pa.schema([(name, types.get(name, pa.string())) for name in row_columns(with_embedding)])


def predict_batch(model, batch: dict, model_name: str, model_version: str, with_embedding: bool = False,
                  node: str = LOCAL_NODE):
    """A decoded batch -> a pandas DataFrame, one row per photo; unreadable photos get an error and no prediction.
    ``node``: where it ran (the Ray node id, or ``local`` for the loop engine)."""
    import pandas as pd

    errors = [str(e) for e in batch["error"]]
    ok = [i for i, e in enumerate(errors) if not e]
    out = model.run(batch["inputs"]) if ok else {}
    rows = []
    for i, rel in enumerate(batch["path"]):
        row = {"batch": str(batch["batch"][i]), "listing": str(batch["listing"][i]), "path": str(rel),
               "label": None, "confidence": None, **{f"prob_{c}": None for c in CLASSES},
               "tags": None, "tag_probs": None, "model_name": model_name, "model_version": model_version,
               "node": node, "error": errors[i] or None}
        if with_embedding:
            row["embedding"] = None
        rows.append(row)
    for k, i in enumerate(ok):
        attrs = out["attributes"][k] if "attributes" in out else None
        pred = model.decode(out["probs"][k], attrs)
        trained = {key.partition(".")[2]: round(float(p), 4) for key, p in zip(model.attribute_keys, attrs)
                   if model.thresholds.get(key) is not None and key.startswith(pred.label + ".")} if attrs is not None else {}
        rows[i].update({"label": pred.label, "confidence": pred.confidence,
                        **{f"prob_{c}": float(p) for c, p in zip(model.classes, out["probs"][k])},
                        "tags": sorted(pred.tags), "tag_probs": json.dumps(trained, sort_keys=True)})
        if with_embedding:
            rows[i]["embedding"] = out["embedding"][k].astype(np.float32).tolist()
    return pd.DataFrame(rows, columns=row_columns(with_embedding))


def load_model_bytes(blob: bytes, threads: int = 1):
    """An ``OnnxModel`` from the ONNX file's bytes (written to a private temp file, then removed)."""
    import tempfile

    from roomclf.models.onnx_file import OnnxModel

    with tempfile.TemporaryDirectory(prefix="roomclf-model-") as d:
        path = Path(d) / "model.onnx"
        path.write_bytes(blob)
        return OnnxModel(path, threads=threads)
