"""A few photos through a registered ONNX model, in this process: what ``roomclf predict`` shows.

``load_model`` resolves a model reference the way infer-all does (registry URI or
file; a bad one raises a ``RoomclfError``); ``predict_photos`` returns one
``PhotoResult`` per photo, in order, a file that cannot be read included (with
its error, never an exception).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from roomclf.models.registry import DEFAULT_ONNX_URI
from roomclf.settings import cpus

TOP = 3


@dataclass
class PhotoResult:
    photo: str                                   # as given
    label: str | None = None
    confidence: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)   # the best classes, most probable first
    tags: dict[str, float] = field(default_factory=dict)         # attribute -> probability, above threshold
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self, model=None) -> dict:
        """JSON-ready; with ``model`` (a ``ModelFile``), its name and version too."""
        d = {"photo": self.photo, "label": self.label,
             "confidence": None if self.confidence is None else round(self.confidence, 4),
             "top": [{"label": c, "p": round(p, 4)} for c, p in self.top], "tags": self.tags, "error": self.error}
        if model is not None:
            d.update({"model": model.name, "model_version": model.version})
        return d


@dataclass
class LoadedModel:
    file: object            # roomclf.infer.run.ModelFile: uri, name, version, sha256, path
    onnx: object            # roomclf.models.onnx_file.OnnxModel


def load_model(uri: str = DEFAULT_ONNX_URI, threads: int | None = None) -> LoadedModel:
    """The model at ``uri`` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or an .onnx path), ready to run."""
    from roomclf.infer.run import resolve_model
    from roomclf.models.onnx_file import OnnxModel

    file = resolve_model(uri)
    return LoadedModel(file, OnnxModel(file.path, threads=threads or min(4, cpus())))


def _result(photo: str, pred, top: int) -> PhotoResult:
    if pred.error:
        return PhotoResult(photo, error=pred.error)
    best = sorted(pred.probabilities.items(), key=lambda kv: -kv[1])[:top]
    return PhotoResult(photo, pred.label, pred.confidence, [(c, float(p)) for c, p in best], dict(pred.tags))


def predict_photos(model: LoadedModel, photos: list[str | os.PathLike], top: int = TOP) -> list[PhotoResult]:
    """One result per photo, in order; a missing, empty or non-image file is a result with an error."""
    names = [str(p) for p in photos]
    results: list[PhotoResult | None] = [None] * len(names)
    readable = []
    for i, name in enumerate(names):
        if Path(name).is_dir():
            results[i] = PhotoResult(name, error="a folder, not a photo")
        else:
            readable.append(i)
    try:
        preds = model.onnx.predict_sources([Path(names[i]) for i in readable])
    except Exception:     # a file failing in a way the loader does not sort out: one at a time
        preds = []
        for i in readable:
            try:
                preds.extend(model.onnx.predict_sources([Path(names[i])]))
            except Exception as exc:
                from roomclf.models.onnx_file import Prediction

                preds.append(Prediction(None, None, error=f"cannot read photo ({type(exc).__name__}: {exc})"[:300]))
    for i, pred in zip(readable, preds):
        results[i] = _result(names[i], pred, top)
    return results  # type: ignore[return-value]
