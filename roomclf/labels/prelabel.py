"""Prelabel: a suggested class, confidence and top-3 for every photo of a batch.

The suggestions come from the registered champion ONNX model when there is one,
else (the cold start) from the zero-shot mapping of ImageNet concepts to rooms.
They are written as ``predicted`` labels in one transaction together with the
labelling queue's order for the batch (meta key ``queue:<batch>``), so the
labelling app starts at once. A photo that cannot be read is reported, never
fatal.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

import numpy as np

from roomclf import storage
from roomclf.corpus import discover
from roomclf.errors import RoomclfError
from roomclf.labels.queue import margin_order, margins, value_order
from roomclf.labels.sources import HUMAN_SOURCES, LabelSource
from roomclf.labels.store import LabelStore
from roomclf.models.registry import DEFAULT_ONNX_URI, ModelNotFound
from roomclf.parallel import BATCH_PHOTOS
from roomclf.settings import EMBEDDING_BACKBONE
from roomclf.taxonomy import CLASSES, UnknownName, canonical_class

MODES = ("auto", "champion", "zeroshot")


class PrelabelError(RoomclfError):
    pass


@dataclass
class Predictions:
    model: str                      # e.g. "roomclf-onnx v3" or "zeroshot:efficientnet_lite0"
    paths: list[str]
    probs: np.ndarray               # len(paths) x 7, CLASSES order
    vectors: np.ndarray | None      # len(paths) x D, L2-normalised (for the queue)
    errors: dict[str, str] = field(default_factory=dict)
    sure_confidence: dict | None = None   # the model's {precision: confidence} on its validation photos


@dataclass
class PrelabelReport:
    model: str
    batches: list[str]
    written: int
    errors: dict[str, str]
    accuracy: float | None = None   # against ground truth, when given
    scored: int = 0                 # photos that had a ground-truth label
    per_class: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.written} photos prelabelled with {self.model}"
        if self.errors:
            text += f", {len(self.errors)} unreadable skipped"
        if self.accuracy is not None:
            text += f"; accuracy {self.accuracy:.1%} on {self.scored} photos with ground truth"
        return text


def top3(row: np.ndarray) -> list[list]:
    idx = np.argsort(-row)[:3]
    return [[CLASSES[i], round(float(row[i]), 4)] for i in idx]


def zero_shot(root: str | os.PathLike, paths: list[str], backbone: str = EMBEDDING_BACKBONE,
              progress: bool = True) -> Predictions:
    """Room probabilities from the ImageNet head over cached raw features."""
    from roomclf.labels.zeroshot import room_probs, softmax
    from roomclf.models.backbones import imagenet_classes
    from roomclf.models.embeddings import Embedder, embed

    embedder = Embedder(backbone)
    emb = embed(root, paths, backbone, normalize=False, progress=progress, embedder=embedder)
    probs = room_probs(softmax(embedder.imagenet_logits(emb.vectors)), imagenet_classes())
    unit = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True).clip(1e-12)
    return Predictions(f"zeroshot:{backbone}", emb.paths, probs, unit, dict(emb.errors))


def champion(root: str | os.PathLike, paths: list[str], uri: str = DEFAULT_ONNX_URI,
             batch_size: int = BATCH_PHOTOS, progress: bool = True) -> Predictions:
    """Room probabilities and embeddings from the registered ONNX model; ModelNotFound if none."""
    from tqdm.auto import tqdm

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import local_onnx, resolve

    ref = resolve(uri)
    model = OnnxModel(local_onnx(ref))
    name = f"{ref.name} v{ref.version}" if ref.version else str(ref.location)
    done, probs, vecs, errors = [], [], [], {}
    with tqdm(total=len(paths), desc=f"prelabel ({name})", unit="photo", disable=not progress) as bar:
        for idx, out, unreadable in model.run_sources([storage.join(root, p) for p in paths], batch_size):
            errors.update({paths[j]: exc.reason for j, exc in unreadable.items()})
            if idx:
                done += [paths[j] for j in idx]
                probs.append(out["probs"])
                vecs.append(out["embedding"] if "embedding" in out else None)
            bar.update(len(idx) + len(unreadable))
    have_vecs = bool(vecs) and all(v is not None for v in vecs)
    return Predictions(name, done, np.concatenate(probs) if probs else np.zeros((0, len(CLASSES))),
                       np.concatenate(vecs) if have_vecs else None, errors, model.meta.get("sure_confidence"))


def predict(root: str | os.PathLike, paths: list[str], mode: str = "auto", uri: str = DEFAULT_ONNX_URI,
            backbone: str = EMBEDDING_BACKBONE, progress: bool = True) -> Predictions:
    """``auto``: the champion when one is registered, else zero-shot."""
    if mode not in MODES:
        raise PrelabelError(f"unknown prelabel mode {mode!r}; one of {', '.join(MODES)}")
    if mode in ("auto", "champion"):
        try:
            return champion(root, paths, uri, progress=progress)
        except ModelNotFound:
            if mode == "champion":
                raise
    return zero_shot(root, paths, backbone, progress=progress)


def read_ground_truth(csv_path: str | os.PathLike) -> dict[str, str]:
    """path -> class from a ``path,label`` CSV, a file or an s3:// object (any known spelling; rows without a
    label are left out)."""
    with storage.open_text(csv_path) as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise PrelabelError(f"{csv_path}: expected a CSV with 'path' and 'label' columns")
        rows = [(r["path"].strip(), r["label"].strip()) for r in reader if (r.get("label") or "").strip()]
    truth, unknown = {}, set()
    for path, raw in rows:
        try:
            truth[path] = canonical_class(raw)
        except UnknownName:
            unknown.add(raw)
    if unknown:
        raise PrelabelError(f"{csv_path}: unknown classes {', '.join(sorted(unknown))}; known: {', '.join(CLASSES)}")
    return truth


def accuracy(pred: Predictions, truth: dict[str, str]) -> tuple[float | None, int]:
    hits = [CLASSES[int(np.argmax(row))] == truth[p] for p, row in zip(pred.paths, pred.probs) if p in truth]
    return (sum(hits) / len(hits) if hits else None), len(hits)


def queue_order(pred: Predictions, labelled: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The photos of ``pred`` most valuable first (see roomclf.labels.queue); ``labelled``: photos a person
    has labelled already (they shorten the queue's head of representatives)."""
    m = margins(pred.probs)
    if pred.vectors is None:
        return [pred.paths[i] for i in margin_order(m)]
    done = np.array([p in labelled for p in pred.paths], bool)
    return [pred.paths[i] for i in value_order(pred.vectors, m, done)]


def write(store: LabelStore, pred: Predictions, batches: list[str], who: str = "prelabel") -> int:
    """Store the suggestions as ``predicted`` labels and each batch's queue, in one transaction."""
    m = margins(pred.probs)
    sure = {"sure_confidence": pred.sure_confidence} if pred.sure_confidence else {}
    rows = [(p, CLASSES[int(np.argmax(row))], float(row.max()),
             {"top3": top3(row), "margin": round(float(mi), 4), "model": pred.model, **sure})
            for p, row, mi in zip(pred.paths, pred.probs, m)]
    order = queue_order(pred, set(store.labels(HUMAN_SOURCES)))
    with store.transaction() as db:
        store.set_labels(rows, LabelSource.PREDICTED, who, db=db)
        for batch in batches:
            store.set_meta(f"queue:{batch}", json.dumps([p for p in order if p.startswith(batch + "/")]), db=db)
    return len(rows)


def prelabel(store: LabelStore, root: str | os.PathLike, batches: str | list[str], mode: str = "auto",
             uri: str = DEFAULT_ONNX_URI, backbone: str = EMBEDDING_BACKBONE,
             ground_truth: str | os.PathLike | None = None, limit: int | None = None,
             progress: bool = True) -> PrelabelReport:
    """Predict every photo of ``batches`` (the first ``limit`` per run if given) and store it."""
    corpus = discover(root, batches)
    batch_names = sorted({p.batch for p in corpus.photos})
    paths = corpus.paths[:limit] if limit else corpus.paths
    pred = predict(corpus.root, paths, mode, uri, backbone, progress)
    written = write(store, pred, batch_names)
    per_class = {c: 0 for c in CLASSES}
    for row in pred.probs:
        per_class[CLASSES[int(np.argmax(row))]] += 1
    report = PrelabelReport(pred.model, batch_names, written, pred.errors, per_class=per_class)
    if ground_truth:
        report.accuracy, report.scored = accuracy(pred, read_ground_truth(ground_truth))
    return report


def has_predictions(store: LabelStore, batch: str) -> bool:
    """Whether any photo of ``batch`` has a ``predicted`` label (prelabel has run on it)."""
    return bool(store.labels((LabelSource.PREDICTED,), prefix=batch.rstrip("/") + "/"))


def ensure_prelabelled(store: LabelStore, root: str | os.PathLike, batch: str, mode: str = "auto",
                       uri: str = DEFAULT_ONNX_URI, backbone: str = EMBEDDING_BACKBONE,
                       ground_truth: str | os.PathLike | None = None, limit: int | None = None,
                       progress: bool = True) -> PrelabelReport | None:
    """Prelabel ``batch`` (champion, else zero-shot in ``auto`` mode) when it has no predictions yet.

    Returns the report, or None when the batch already had predictions (nothing done)."""
    if has_predictions(store, batch):
        return None
    return prelabel(store, root, [batch], mode, uri, backbone, ground_truth, limit, progress)


def log_to_mlflow(report: PrelabelReport) -> bool:
    """Inside ``mlflow run`` (MLFLOW_RUN_ID set), record what prelabel did on that run."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        return False
    from roomclf.settings import setup_mlflow

    setup_mlflow()
    import mlflow

    with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
        mlflow.log_params({"prelabel_model": report.model, "prelabel_batches": ",".join(report.batches)})
        metrics = {"prelabel_written": report.written, "prelabel_unreadable": len(report.errors)}
        if report.accuracy is not None:
            metrics["prelabel_accuracy"] = report.accuracy
        mlflow.log_metrics(metrics)
    return True
