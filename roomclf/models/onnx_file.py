"""Exporting a room network to ONNX, and running an exported one.

The ONNX file is self-describing: its metadata (key ``roomclf``) holds the
backbone, input size, pooling, class order, attribute keys and per-attribute
decision thresholds (``null`` = untrained, never emitted). ``OnnxModel`` is the one
runtime wrapper used by infer-all, serving and prelabel; ``execution_providers``
is the one choice of onnxruntime providers (every session roomclf creates, and
the providers recorded with the registered ONNX flavour).

This module and ``roomclf.models.pyfunc`` are shipped inside the registered
pyfunc (``code/roomclf``): at module level they import only numpy and roomclf's
light modules, never torch.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf.errors import RoomclfError
from roomclf.parallel import BATCH_PHOTOS
from roomclf.photos import model_inputs
from roomclf.taxonomy import ATTRIBUTE_KEYS, CLASSES

META_KEY = "roomclf"
OUTPUTS = ("probs", "attributes", "embedding")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def execution_providers() -> list[str]:
    """The onnxruntime providers for every session roomclf creates, best first: CUDA then CPU when the
    installed onnxruntime has CUDA (onnxruntime-gpu) and this host has a GPU, else CPU only."""
    return list(_providers())


def open_session(model: str | os.PathLike | bytes, threads: int = 1):
    """An onnxruntime session over an ONNX file or its bytes, the one way roomclf opens one: ``threads``
    intra-op threads, one inter-op thread, on ``execution_providers()``. One thread suits bulk work, which
    runs a batch per core (``roomclf.parallel``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=execution_providers())


@functools.lru_cache(maxsize=1)
def _providers() -> tuple[str, ...]:
    import onnxruntime as ort

    return (CUDA, CPU) if CUDA in ort.get_available_providers() and gpu_present() else (CPU,)


def gpu_present() -> bool:
    """Whether this host shows an NVIDIA GPU to this process (driver files; CUDA is not initialised,
    so a process that forks afterwards is unaffected). ``CUDA_VISIBLE_DEVICES=""`` or ``-1`` hides them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or any(Path("/dev").glob("nvidia[0-9]*"))


def export_onnx(export_net, path: str | os.PathLike, meta: dict, opset: int | None = None) -> Path:
    """Write ``export_net`` (a ``roomclf.models.network.ExportNet``) as a single-file ONNX with metadata."""
    from roomclf.models.backbones import get_spec
    from roomclf.models.export_graph import export_graph

    spec = get_spec(export_net.net.backbone)
    size = int(meta.get("input_size") or spec.train_size)
    full = {"backbone": spec.name, "input_size": size, "classes": list(CLASSES),
            "attribute_keys": list(ATTRIBUTE_KEYS), "attribute_thresholds": {},
            "pooling": getattr(export_net.net, "pooling", "avg"), **meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_onnx(export_graph(export_net, size, list(OUTPUTS), path.parent, opset=opset), path, full)


def read_meta(model) -> dict | None:
    """The roomclf metadata of a loaded ONNX model (``onnx.ModelProto``), or None when it has none."""
    for entry in model.metadata_props:
        if entry.key == META_KEY:
            return json.loads(entry.value)
    return None


def save_onnx(model, path: str | os.PathLike, meta: dict) -> Path:
    """Write ``model`` (``onnx.ModelProto``) at ``path`` atomically, with ``meta`` as its only metadata:
    the one writer of exported, quantised and combined room models."""
    import onnx

    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def find_onnx(location: str | os.PathLike) -> Path:
    """A .onnx file, or a folder (e.g. a downloaded MLflow model, a training run's output) holding one: its only
    .onnx file, else its top-level ``model.onnx`` (the name MLflow and training give the model); a folder
    with several and no ``model.onnx`` is refused rather than guessed at."""
    p = Path(location)
    if p.is_file():
        return p
    found = sorted(p.rglob("*.onnx")) if p.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no .onnx model at {location}")
    if len(found) == 1:
        return found[0]
    if (p / "model.onnx").is_file():
        return p / "model.onnx"
    raise FileNotFoundError(f"{location} holds {len(found)} .onnx files and no model.onnx "
                            f"({', '.join(f.name for f in found[:4])}): name the file")


@dataclass
class Prediction:
    label: str | None
    confidence: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    tags: dict[str, float] = field(default_factory=dict)   # attribute -> probability, above threshold
    error: str | None = None
    error_kind: str | None = None                          # PhotoError.kind when the photo could not be read

    def as_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities,
                "tags": self.tags, "error": self.error}


class NotARoomclfModel(RoomclfError, ValueError):
    """A model file onnxruntime cannot load, or an ONNX graph roomclf did not export."""


class OnnxModel:
    """One onnxruntime session over an exported room network."""

    def __init__(self, location: str | os.PathLike, threads: int = 1):
        """``threads``: the session's intra-op threads. One (the default) suits bulk work, where
        ``run_sources`` runs a batch per core; more suit one request at a time (serving)."""
        self.path = find_onnx(location)
        self.threads = threads
        try:
            self.session = open_session(self.path, threads)
        except Exception as exc:      # onnxruntime's own errors: a damaged or foreign file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise NotARoomclfModel(f"{self.path} is not a readable ONNX model ({first})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise NotARoomclfModel(f"{self.path} is not a roomclf model (no '{META_KEY}' metadata)")
        self.meta = json.loads(raw)
        self.classes: list[str] = self.meta["classes"]
        self.input_size: int = int(self.meta["input_size"])
        self.attribute_keys: list[str] = self.meta.get("attribute_keys", [])
        self.thresholds: dict[str, float | None] = self.meta.get("attribute_thresholds", {})
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.provider: str = self.session.get_providers()[0]    # the one it runs on

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """float32 N x 3 x S x S in [0, 1] -> {'probs', 'attributes', 'embedding'}."""
        outs = self.session.run(None, {"image": np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self.output_names, outs))

    def decode(self, probs: np.ndarray, attrs: np.ndarray | None = None) -> Prediction:
        """One row of outputs -> a Prediction; tags only for trained attributes of the predicted class."""
        i = int(np.argmax(probs))
        label = self.classes[i]
        tags = {}
        if attrs is not None:
            for key, p in zip(self.attribute_keys, attrs):
                thr = self.thresholds.get(key)
                room, _, name = key.partition(".")
                if thr is not None and room == label and float(p) >= thr:
                    tags[name] = round(float(p), 4)
        return Prediction(label, float(probs[i]), {c: float(v) for c, v in zip(self.classes, probs)}, tags)

    def predict_sources(self, sources: list, batch_size: int = BATCH_PHOTOS, progress: str | None = None,
                        workers: int | None = None) -> list[Prediction]:
        """Paths or bytes -> Predictions; a photo that cannot be read gets an error, not an exception.
        ``progress``: a label for a progress bar (shown on a terminal), or None for none; ``workers``: as for
        ``run_sources``."""
        from tqdm import tqdm

        results: list[Prediction | None] = [None] * len(sources)
        batches = tqdm(self.run_sources(sources, batch_size, workers), total=-(-len(sources) // batch_size),
                       desc=progress, unit="batch", disable=None if progress else True, leave=False)
        for idx, out, unreadable in batches:
            for j, exc in unreadable.items():
                results[j] = Prediction(None, None, error=exc.reason, error_kind=exc.kind)
            attrs = out.get("attributes")
            for k, j in enumerate(idx):
                results[j] = self.decode(out["probs"][k], None if attrs is None else attrs[k])
        return results  # type: ignore[return-value]

    def run_sources(self, sources: list, batch_size: int = BATCH_PHOTOS, workers: int | None = None):
        """Paths or bytes through the shared loader and the model, a batch at a time: yields (indices of the
        readable sources, their outputs as ``run`` gives them, {index: PhotoError} of the others), in order.
        ``workers``: batches decoded and run at once, each in its own thread (``roomclf.parallel``); by default
        as many as fill the cores with this session's intra-op threads, so a one-thread session runs one
        batch per core."""
        from roomclf.parallel import ordered_map, workers_for
        from roomclf.settings import cpus

        def one(start: int):
            arrays, idx, unreadable = model_inputs(sources[start:start + batch_size], self.input_size)
            idx = [start + i for i in idx]
            unreadable = {start + i: exc for i, exc in unreadable.items()}
            return idx, (self.run(np.stack(arrays)) if arrays else {}), unreadable

        starts = range(0, len(sources), batch_size)
        yield from ordered_map(one, starts, min(len(starts), workers or workers_for(self.threads, cpus())))
