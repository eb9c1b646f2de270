"""What a training run records in MLflow, and the report figures it draws.

Pure helpers: ``class_report`` (per-class precision/recall/F1 from labels and
predictions, computed by ``roomclf.metrics``), ``sure_confidence`` (the confidence above which a model is right
often enough for its predictions to be trained on), ``confusion_png`` and
``top_loss_grid`` (figures written atomically to a path), ``git_commit``, and ``epoch_logger`` (a fastai callback
that logs train/valid loss, accuracy and macro-F1 after every epoch).
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import numpy as np

from roomclf import metrics, storage
from roomclf.taxonomy import CLASSES


@functools.lru_cache(maxsize=None)
def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The commit of roomclf's own checkout (whatever the working directory), or 'unknown' outside git;
    asked of git once per process."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def class_report(y_true: np.ndarray, y_pred: np.ndarray, classes=CLASSES) -> dict:
    """{'accuracy', 'macro_f1', 'per_class': {class: {precision, recall, f1, support}}, 'text'}
    (``roomclf.metrics.class_report`` over the room classes)."""
    return metrics.class_report(y_true, y_pred, classes)


def sure_confidence(probs: np.ndarray, y_true: np.ndarray, precision: float) -> float | None:
    """The lowest confidence (top class probability) at which the predictions at or above it are right at
    least ``precision`` of the time on these labelled photos; None when not even the surest one reaches it."""
    conf = np.asarray(probs).max(1)
    order = np.argsort(-conf, kind="stable")
    right = (np.asarray(probs).argmax(1) == np.asarray(y_true))[order]
    running = np.cumsum(right) / np.arange(1, len(order) + 1)
    ok = np.nonzero(running >= precision)[0]
    return float(conf[order][ok[-1]]) if len(ok) else None


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def confusion_png(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike, classes=CLASSES) -> Path:
    """A confusion-matrix heat map (rows: true class, columns: predicted) with counts: scikit-learn's
    ``ConfusionMatrixDisplay``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(cm, display_labels=list(classes)).plot(ax=ax, cmap="Blues", colorbar=False,
                                                                  values_format="d", xticks_rotation=45)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"validation confusion matrix (n={int(cm.sum())})")
    return _save_figure(fig, Path(path))


def top_losses(probs: np.ndarray, y_true: np.ndarray, k: int = 16) -> list[int]:
    """Indices of the k validation photos with the highest cross-entropy loss."""
    loss = -np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0))
    return [int(i) for i in np.argsort(-loss, kind="stable")[:k]]


def top_loss_grid(root: str | os.PathLike, paths: list[str], probs: np.ndarray, y_true: np.ndarray,
                  path: str | os.PathLike, k: int = 16, classes=CLASSES) -> Path:
    """A grid of the highest-loss validation photos titled 'true / predicted (p)'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from roomclf.photos import PhotoError, thumbnail

    idx = top_losses(probs, y_true, k)
    cols = 4
    rows = max(1, -(-len(idx) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), idx):
        pred = int(np.argmax(probs[i]))
        try:
            ax.imshow(thumbnail(storage.join(root, paths[i]), 160))
        except PhotoError:
            pass
        ax.set_title(f"{classes[y_true[i]]} / {classes[pred]} ({probs[i, pred]:.2f})\n{paths[i]}", fontsize=7)
    fig.suptitle("highest-loss validation photos: true / predicted (probability)")
    return _save_figure(fig, Path(path))


def epoch_logger():
    """A fastai callback logging each epoch's recorder values to the active MLflow run.

    Steps count on across several ``fit`` calls (frozen, then unfrozen), and the phase
    (frozen/unfrozen) of the step is logged as ``phase_unfrozen`` (0/1).
    """
    import mlflow
    from fastai.callback.core import Callback
    from fastai.learner import Recorder

    class MlflowEpochLogger(Callback):
        order = Recorder.order + 1

        def __init__(self):
            self.step = 0

        def after_epoch(self):
            names = [n.replace(" ", "_") for n in self.recorder.metric_names[1:]]
            values = dict(zip(names, self.recorder.log[1:]))
            metrics = {}
            for name, value in values.items():
                if name == "time":
                    continue
                try:
                    metrics[{"f1_score": "macro_f1"}.get(name, name)] = float(value)
                except (TypeError, ValueError):
                    continue
            frozen = all(not p.requires_grad for p in self.learn.model.body.parameters())
            metrics["phase_unfrozen"] = 0.0 if frozen else 1.0
            mlflow.log_metrics({f"epoch_{k}": v for k, v in metrics.items()}, step=self.step)
            self.step += 1

    return MlflowEpochLogger()
