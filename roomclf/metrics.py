"""Precision, recall, F1, ROC AUC, the threshold sweep and cross-validation folds: the one place they are
computed, on scikit-learn, for every caller (training's class report, the attribute heads, propagation's
threshold table, the demo's tag summary).

The empty cases have one answer everywhere: a score with nothing to divide by is 0 (scikit-learn's
``zero_division=0``): precision with no predicted positive, recall with no true positive, F1 with neither.
The counts (``support``: true positives there are, ``predicted``: predicted positives) come with the scores,
so a caller that must tell "0" from "could not be measured" reads them.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def class_scores(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (precision, recall, f1, support) arrays over class indices 0..n_classes-1."""
    from sklearn.metrics import precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(y_true):
        zeros = np.zeros(n_classes)
        return zeros, zeros.copy(), zeros.copy(), np.zeros(n_classes, np.int64)
    return precision_recall_fscore_support(y_true, y_pred, labels=list(range(n_classes)), zero_division=0)


def class_report(y_true, y_pred, classes: Sequence[str]) -> dict:
    """{'accuracy', 'macro_f1' (over the classes present in ``y_true``), 'per_class': {class: {precision,
    recall, f1, support}}, 'text'} of class indices ``y_pred`` against ``y_true``."""
    from sklearn.metrics import classification_report

    p, r, f, s = class_scores(y_true, y_pred, len(classes))
    present = s > 0
    text = (classification_report(y_true, y_pred, labels=list(range(len(classes))), target_names=list(classes),
                                  digits=3, zero_division=0) if len(y_true) else "")
    return {"accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0,
            "macro_f1": float(np.mean(f[present])) if present.any() else 0.0,
            "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, c in enumerate(classes)},
            "text": text}


def binary_scores(truth, predicted) -> dict:
    """Precision, recall and F1 of the boolean ``predicted`` against the boolean ``truth``, with
    ``support`` (true positives there are) and ``predicted`` (predicted positives)."""
    t, p = np.asarray(truth, bool).ravel(), np.asarray(predicted, bool).ravel()
    prec, rec, f1, _ = class_scores(t.astype(np.int64), p.astype(np.int64), 2)
    return {"precision": float(prec[1]), "recall": float(rec[1]), "f1": float(f1[1]),
            "support": int(t.sum()), "predicted": int(p.sum())}


def auc(scores, y) -> float | None:
    """ROC AUC of ``scores`` for the labels ``y`` (> 0.5 is positive; ties count half); None without
    both classes."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y) > 0.5
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, np.asarray(scores)))


def threshold_sweep(scores, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, precision, recall, f1) of predicting ``scores >= threshold`` for each distinct score,
    highest threshold first. With no positive in ``y`` recall and F1 are 0."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y) > 0.5
    with warnings.catch_warnings():          # no positive: sklearn warns and sets recall to 1
        warnings.simplefilter("ignore", UserWarning)
        precision, recall, thresholds = precision_recall_curve(y, np.asarray(scores))
    precision, recall = precision[:-1][::-1], recall[:-1][::-1]      # drop the (1, 0) end point
    if not y.any():
        recall = np.zeros_like(recall)
    tp = precision > 0
    f1 = np.where(tp, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return thresholds[::-1], precision, recall, f1


def fold_ids(y, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number (0..folds-1) for each item, stratified by the labels ``y`` (scikit-learn's shuffled
    ``StratifiedKFold``): fold sizes differ by at most one. Classes with fewer items than folds are spread as
    far as they go; where no class has that many, the folds are plain shuffled ones (``KFold``)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if len(counts) and counts.max() >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    ids = np.full(len(y), -1)
    with warnings.catch_warnings():          # "the least populated class has only n members": expected
        warnings.simplefilter("ignore", UserWarning)
        for f, (_, held) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
            ids[held] = f
    return ids
