"""The plain functions both infer-all engines share, one batch of photos at a time.

* ``decode_batch``: relative paths -> uint8 pixels (the shared photo loader's
  preprocessing: upright RGB, shorter side to the input size, centre crop) and
  an error per photo that cannot be read;
* ``predict_batch``: pixels -> one row per photo (class, probabilities, tags,
  optional embedding, model name/version, node, error), via ``OnnxModel``;
* ``row_schema``: the Parquet schema of those rows.

The loop engine calls them in-process; the Ray engine as map_batches tasks and
actors (``roomclf.infer.ray_engine``). Neither imports the other.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from roomclf.errors import RoomclfError
from roomclf.photos import PhotoError, model_pixels, to_array
from roomclf.storage import StorageError, join
from roomclf.taxonomy import CLASSES

LOCAL_NODE = "local"


class InferError(RoomclfError):
    """Bad input to infer-all (model, engine, cluster address)."""


# The shared preprocessing, in two halves: decode to compact uint8 pixels (shipped between Ray
# tasks), then float conversion right before the model.
decode = model_pixels
to_model_input = to_array


def decode_batch(batch: dict, root: str, size: int) -> dict:
    """{'path', 'batch', 'listing'} columns -> the same plus 'pixels' (uint8) and 'error' ('' when fine).
    ``root``: a local folder or an ``s3://`` URI; the photos are read where this runs (on a Ray worker, there).
    Object storage that cannot be used as configured (credentials, bucket) stops the run: ``StorageError``."""
    paths = list(batch["path"])
    pixels = np.zeros((len(paths), size, size, 3), np.uint8)
    errors = []
    for i, rel in enumerate(paths):
        try:
            pixels[i] = decode(join(root, rel), size)
            errors.append("")
        except PhotoError as exc:
            errors.append(exc.reason)
        except StorageError:      # not this photo's fault: every photo would fail the same way
            raise
        except Exception as exc:  # never let one photo stop a run
            errors.append(f"cannot read photo ({type(exc).__name__}: {exc})"[:300])
    return {"path": np.asarray(paths, dtype=object), "batch": np.asarray(list(batch["batch"]), dtype=object),
            "listing": np.asarray(list(batch["listing"]), dtype=object), "pixels": pixels,
            "error": np.asarray(errors, dtype=object)}


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
    out = model.run(to_model_input(np.asarray(batch["pixels"])[ok])) if ok else {}
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
