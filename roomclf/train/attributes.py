"""Attribute tags within each class: label matrices, masked-BCE heads, thresholds.

An attribute key (``kitchen.refrigerator``) is present (1), absent (0) or
*unknown* for a photo. Unknown is never a negative: ``attribute_targets``
returns targets ``Y`` with a mask ``M`` (True where the label is known) and
the head's loss counts only known cells (masked binary cross-entropy).

What counts as known (the evidence policy, stated once here):

- **Only attributes of the photo's own class** get targets; every other key is
  masked. A label stored under another class is carried over by name when the
  photo's class has an attribute of that name (``living_room.tv`` on a photo
  now labelled bedroom becomes ``bedroom.tv``; ``stairs`` on an interior photo
  becomes ``interior.staircase`` through the taxonomy's aliases), else dropped.
- **Evidence by source.** A label file may say how each label was made (an optional
  ``method`` column). ``by_eye`` and curated labels (``curated_subtype``,
  ``scene_curation``, or no method at all) are taken as they are. A 0 from object
  annotations (a method naming ``annotation``, e.g. ``miniplaces_object_annotation``)
  means "not annotated", not "absent": under the default policy ``reliable`` such a
  zero is dropped (unknown, not negative) wherever better evidence exists, i.e. when
  the same photo has a reliable label for that attribute, or the file holds reliable
  negatives for that attribute (``refrigerator`` and ``tv`` have by-eye negatives, so
  their annotation zeros go); elsewhere it is the only negative evidence there is and
  is kept (stove, dishwasher, microwave, range hood, stairs). A 1 from annotations is
  kept: the object was annotated. ``as_is`` keeps every row, ``no_annotation_zeros``
  drops every annotation zero. ``bench/bench_attributes.py`` measures the three.
  Checked by eye on 24 random annotated kitchen photos: a zero was now and then wrong
  (appliance visible) for refrigerator / microwave / range hood, never for dishwasher,
  but often for stove_or_oven (ovens at the frame's edge).
- **Implied negatives for subtypes.** The interior and exterior attributes are
  kinds of space (laundry, foyer, front, pool...), and label files mostly give
  positives only. A positive for one of them makes another attribute of the
  same class a negative only if the two cannot be the main subject of one photo
  together: a laundry room is not a home office, a house front is not a
  backyard. Pairs in ``COMPATIBLE`` may share a photo (a foyer shows its
  staircase, a front shows its driveway and garden, a pool lies in the
  backyard), so they imply nothing. An explicit label always wins over an
  implied one. Consequence on the shared corpus: ``exterior.garden`` has
  positives but no sound negatives, so it stays untrained until someone labels
  negatives.

``fit_attribute_head`` trains one ``roomclf.models.network.AttributeHead`` (one linear
logit per key over the classifier's raw pooled features) with class-balanced
masked BCE and an L2 penalty, on standardised features whose scaling is then
folded into the linear layer, so the exported graph takes raw features. The
threshold of each key maximises F1 on the validation photos among thresholds
with precision >= 0.8, unless that costs more than a tenth of the best F1 (then
plain max F1); a key with fewer than ``MIN_VAL_POSITIVES`` validation positives
gets its threshold from out-of-fold predictions on the training photos instead.
A key is *untrained* (threshold ``None``, never emitted, listed in
``AttributeFit.untrained``, its weights zeroed) when it has fewer than
``min_positives`` training positives, no negatives, or a head that ranks photos
no better than chance (AUC < ``min_auc``). With ``gate="pooled"`` (the default)
that AUC is taken over the out-of-fold scores of the training photos together
with the validation photos: a validation batch holds only a handful of
positives for most keys, and an AUC over 3 positives passes or fails by luck
(``gate="validation"``, the earlier rule, judges on them alone).
On the shared corpus (``bench/bench_attributes.py``, frozen efficientnet_lite0
features) the last rule drops stove, dishwasher, microwave and range hood: against
annotation zeros their heads rank below ``min_auc``. The refrigerator,
judged on by-eye negatives once its annotation zeros are left out, trains; it is
dropped when those zeros count as negatives. The living-room fireplace is dropped
too: frozen pooled ImageNet features barely see fireplaces, whatever the pooling
(docs/benchmarks.md, attribute tags, the frozen-features table).

An ImageNet-concept prior (``prior=(A, a)``: the backbone's classifier rows for
television, refrigerator, dishwasher, microwave, stove, washer, fire screen, ...;
linear in the features, so it folds into the same Linear and needs nothing new
in the ONNX graph) was measured by an earlier version of the bench: no gain, so
it is off by default.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from roomclf import storage
from roomclf.errors import RoomclfError
from roomclf.metrics import auc, binary_scores, fold_ids, threshold_sweep
from roomclf.labels.sources import SOURCES, LabelSource
from roomclf.labels.store import ImportReport, LabelStore
from roomclf.taxonomy import (
    ATTRIBUTE_KEYS,
    ATTRIBUTES,
    UnknownName,
    canonical_attribute,
)

KEY_INDEX = {k: i for i, k in enumerate(ATTRIBUTE_KEYS)}
MIN_PRECISION = 0.8
MIN_VAL_POSITIVES = 3
MIN_POSITIVES, MIN_AUC = 5, 0.7   # fit_attribute_head's defaults: below them a key is untrained
PRECISION_F1_SHARE = 0.9   # precision >= 0.8 may cost at most a tenth of the best F1
UNTRAINED_BIAS = -12.0   # an untrained key outputs ~6e-6, and has no threshold anyway

# Attributes of one class that may both be the subject of one photo: a positive for one
# implies nothing about the other. Every other pair within interior/exterior is exclusive.
SUBTYPE_CLASSES = ("interior", "exterior")
COMPATIBLE = {frozenset(p) for p in [
    ("foyer", "staircase"), ("hallway", "staircase"), ("foyer", "hallway"), ("basement", "staircase"),
    ("basement", "laundry"), ("garage", "laundry"), ("basement", "garage"), ("closet", "hallway"),
    ("closet", "foyer"), ("closet", "laundry"), ("attic", "staircase"),
    ("front", "driveway"), ("front", "garden"), ("front", "patio"), ("backyard", "pool"),
    ("backyard", "garden"), ("backyard", "patio"), ("pool", "patio"), ("pool", "garden"),
    ("garden", "patio"), ("garden", "driveway"),
]}


class AttributeDataError(RoomclfError):
    """Bad attribute-label input (missing file, wrong columns)."""


@dataclass
class AttributeFit:
    head: object                                  # roomclf.models.network.AttributeHead
    thresholds: dict[str, float | None]           # key -> threshold, None = untrained
    report: dict[str, dict]                       # key -> precision, recall, f1, support, positives, threshold...
    untrained: list[str] = field(default_factory=list)
    val_scores: np.ndarray | None = None          # validation photos x keys: what the emitted head gives them

    @property
    def trained(self) -> list[str]:
        return [k for k, t in self.thresholds.items() if t is not None]


# ---- labels -------------------------------------------------------------------------------
EVIDENCE_POLICIES = ("reliable", "as_is", "no_annotation_zeros")
DEFAULT_EVIDENCE = "reliable"


def is_annotation(method: str | None) -> bool:
    """A label made from object annotations, whose 0 only means "not annotated"."""
    return "annotation" in (method or "").lower()


@dataclass
class AttributeImportReport(ImportReport):
    evidence: str = DEFAULT_EVIDENCE
    dropped_zeros: dict[str, int] = field(default_factory=dict)   # attribute name -> annotation zeros left out

    def summary(self) -> str:
        text = super().summary()
        if self.dropped_zeros:
            text += (f"; evidence '{self.evidence}': {sum(self.dropped_zeros.values())} object-annotation zeros "
                     f"left out as unknown ({', '.join(f'{k} {v}' for k, v in sorted(self.dropped_zeros.items()))})")
        return text


def select_evidence(rows: list[dict], policy: str = DEFAULT_EVIDENCE, drop_zeros: Iterable[str] = (),
                    only: Iterable[str] | None = None) -> tuple[list[dict], dict[str, int]]:
    """The rows of an attribute file that count as evidence under ``policy`` (see the module
    docstring), and how many zeros were left out per attribute name. ``only`` keeps the rows
    of those photos (the policy still looks at the whole file)."""
    if policy not in EVIDENCE_POLICIES:
        raise AttributeDataError(f"unknown evidence policy {policy!r} (choose {', '.join(EVIDENCE_POLICIES)})")

    def name(rec: dict) -> str:
        return (rec.get("attribute") or "").strip().lower()

    def is_zero(rec: dict) -> bool:
        return str(rec.get("value")).strip() in ("0", "0.0")

    forced = {d.strip().lower() for d in drop_zeros}
    reliable = [r for r in rows if not is_annotation(r.get("method"))]
    better_pairs = {((r.get("path") or "").strip(), name(r)) for r in reliable}
    better_negatives = {name(r) for r in reliable if is_zero(r)}
    kept, dropped = [], {}
    keep = None if only is None else set(only)
    for rec in rows:
        path, n, zero = (rec.get("path") or "").strip(), name(rec), is_zero(rec)
        if keep is not None and path not in keep:
            continue
        weak = is_annotation(rec.get("method"))
        if weak and policy == "reliable" and (path, n) in better_pairs and not zero:
            continue                    # an annotation 1 where the photo has a better label for it: that one wins
        drop = zero and (n in forced or (weak and (
            policy == "no_annotation_zeros"
            or (policy == "reliable" and (n in better_negatives or (path, n) in better_pairs)))))
        if drop:
            dropped[n] = dropped.get(n, 0) + 1
        else:
            kept.append(rec)
    return kept, dropped


def import_attributes(store: LabelStore, csv_path: str | os.PathLike, corpus_root: str | os.PathLike | None,
                      source: str = LabelSource.IMPORTED, who: str | None = None, drop_zeros: Iterable[str] = (),
                      evidence: str = DEFAULT_EVIDENCE, paths: Iterable[str] | None = None) -> AttributeImportReport:
    """Import a ``path,attribute,value[,method]`` CSV into the label store (its room labels must be there first).

    Unknown attribute names and photos missing from the corpus are counted in the report and
    ignored. ``evidence`` chooses which rows count (``select_evidence``); ``drop_zeros`` also
    leaves out the zeros of the attributes it names. ``paths`` keeps only rows of those photos.
    """
    if not storage.is_file(csv_path):      # a file or an s3:// object
        raise AttributeDataError(f"attribute file not found: {csv_path}")
    with storage.open_text(csv_path) as f:
        reader = csv.DictReader(f)
        missing = {"path", "attribute", "value"} - set(reader.fieldnames or ())
        if missing:
            raise AttributeDataError(f"{csv_path}: expected columns path, attribute, value (missing {', '.join(sorted(missing))})")
        rows = list(reader)
    rows, dropped = select_evidence(rows, evidence, drop_zeros, only=paths)
    base = store.import_attribute_rows(rows, source, who, corpus_root=corpus_root)
    return AttributeImportReport(**vars(base), evidence=evidence, dropped_zeros=dropped)


def implied_negatives(room: str, positives: Iterable[str]) -> set[str]:
    """Attributes of ``room`` that a photo positive for ``positives`` cannot show as its subject."""
    if room not in SUBTYPE_CLASSES:
        return set()
    pos = set(positives)
    return {a for a in ATTRIBUTES[room] if a not in pos
            and any(frozenset((a, p)) not in COMPATIBLE for p in pos)}


def attribute_targets(paths: list[str], store: LabelStore, room_labels: dict[str, str],
                      sources: Iterable[str] = SOURCES) -> tuple[np.ndarray, np.ndarray]:
    """Y (N x K float32 0/1) and M (N x K bool: True where the label is known) over ATTRIBUTE_KEYS."""
    stored = store.attributes(list(sources))
    Y = np.zeros((len(paths), len(ATTRIBUTE_KEYS)), np.float32)
    M = np.zeros(Y.shape, bool)
    for i, path in enumerate(paths):
        room = room_labels.get(path)
        if room is None or room not in ATTRIBUTES:
            continue
        known: dict[str, int] = {}
        for key, value in stored.get(path, {}).items():
            stored_room, _, name = key.partition(".")
            if stored_room != room:
                try:
                    name = canonical_attribute(room, name)
                except UnknownName:
                    continue
                if name in known:       # a label stored under the photo's own class wins
                    continue
            known[name] = int(value)
        for name in implied_negatives(room, [n for n, v in known.items() if v == 1]):
            known.setdefault(name, 0)
        for name, value in known.items():
            j = KEY_INDEX.get(f"{room}.{name}")
            if j is None:           # an attribute people added in the app: no model output
                continue
            Y[i, j], M[i, j] = value, True
    return Y, M


# ---- thresholds and metrics ---------------------------------------------------------------
def scores_metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """Precision, recall and F1 of tagging ``scores >= threshold`` (``roomclf.metrics.binary_scores``)."""
    s = binary_scores(np.asarray(y) == 1, np.asarray(scores) >= threshold)
    return {k: s[k] for k in ("precision", "recall", "f1")}


def choose_threshold(scores: np.ndarray, y: np.ndarray, min_precision: float = MIN_PRECISION) -> float:
    """The threshold of best F1 among those with precision >= min_precision, unless that costs
    more than a tenth of the best F1 (then the threshold of best F1)."""
    s, precision, _, f1 = threshold_sweep(scores, y)     # one cut per distinct score, highest first
    best = int(np.argmax(f1))
    ok = (precision >= min_precision) & (f1 >= PRECISION_F1_SHARE * f1[best])
    i = int(np.flatnonzero(ok)[np.argmax(f1[ok])]) if ok.any() else best
    below = s[i + 1] if i + 1 < len(s) else max(0.0, s[i] - 1e-3)
    return float((s[i] + below) / 2)


# ---- the head -----------------------------------------------------------------------------
def _train_linear(Z: np.ndarray, Y: np.ndarray, M: np.ndarray, weight_decay: float, seed: int,
                  iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced masked BCE + L2, full-batch L-BFGS. Returns (W K x D, b K) over Z."""
    import torch

    torch.manual_seed(seed)
    z, y, m = (torch.from_numpy(np.ascontiguousarray(a)) for a in (Z.astype(np.float32), Y.astype(np.float32), M))
    pos, neg = (m & (y > 0.5)).float(), (m & (y < 0.5)).float()
    # each key's positives and negatives weigh 1/2 each: few-shot keys are not drowned
    w_rows = pos / pos.sum(0).clamp(min=1) * 0.5 + neg / neg.sum(0).clamp(min=1) * 0.5
    rate = (pos.sum(0) / (pos.sum(0) + neg.sum(0)).clamp(min=1)).clamp(0.02, 0.98)
    W = torch.zeros(Z.shape[1], Y.shape[1], requires_grad=True)
    b = torch.logit(rate).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = z @ W + b
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = (bce * w_rows).sum() + weight_decay * (W ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return W.detach().numpy().T.copy(), b.detach().numpy().copy()


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return X.mean(0), X.std(0) + 1e-6


def folded_head(W: np.ndarray, b: np.ndarray):
    """The torch ``AttributeHead`` (eval mode) of a folded linear head: logits = X @ W.T + b."""
    import torch

    from roomclf.models.network import AttributeHead

    head = AttributeHead(W.shape[1])
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(np.asarray(W, np.float32)))
        head.linear.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
    return head.eval()


def head_scores(W: np.ndarray, b: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities of a folded linear head over raw features."""
    from scipy.special import expit

    return expit(X @ W.T + b)


def fit_linear(X: np.ndarray, Y: np.ndarray, M: np.ndarray, weight_decay: float = 1e-2, seed: int = 0,
               prior: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masked-BCE linear head over raw features X, returned folded: logits = X @ W.T + b.

    ``prior`` = (A, a), a linear map of the features to extra inputs (e.g. some ImageNet
    logits, which are themselves linear in the features); it only changes what the
    L2 penalty favours and is folded away, so the head stays one Linear over X.
    """
    X = np.asarray(X, np.float32)
    mu, sd = _standardise(X)
    Z, fold_A, fold_c = (X - mu) / sd, np.diag(1 / sd), -mu / sd
    if prior is not None:
        A, a = prior
        L = X @ A.T + a
        lmu, lsd = _standardise(L)
        Z = np.hstack([Z, (L - lmu) / lsd])
        fold_A = np.hstack([fold_A, A.T / lsd])
        fold_c = np.r_[fold_c, (a - lmu) / lsd]
    Wz, bz = _train_linear(Z, Y, M, weight_decay, seed)
    return (Wz @ fold_A.T).astype(np.float32), (bz + Wz @ fold_c).astype(np.float32)


def _oof_scores(X, Y, M, cols, weight_decay, seed, prior, folds=5) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold scores of keys ``cols`` on their labelled training rows: col -> (scores, labels).

    Folds are stratified per key (``roomclf.metrics.fold_ids``); all keys share one masked fit per fold
    (keys are independent).
    """
    fold = np.full((len(X), len(cols)), -1)
    for c, j in enumerate(cols):
        idx = np.flatnonzero(M[:, j])
        fold[idx, c] = fold_ids(Y[idx, j] > 0.5, folds, seed)
    Yc, Mc, scores = Y[:, cols], M[:, cols], np.zeros((len(X), len(cols)))
    for f in range(folds):
        held = fold == f
        if not held.any():
            continue
        W, b = fit_linear(X, Yc, Mc & ~held, weight_decay, seed, prior)
        scores[held] = head_scores(W, b, X)[held]
    return {j: (scores[Mc[:, c], c], Yc[Mc[:, c], c]) for c, j in enumerate(cols)}


def _judge(entry: dict, scores: np.ndarray, y: np.ndarray, source: str, gate: tuple[np.ndarray, np.ndarray],
           gate_on: str, min_auc: float) -> tuple[float, bool]:
    """The threshold of one key on (scores, y), and whether the key ranks better than chance on
    ``gate`` (scores, labels)."""
    thr = round(choose_threshold(scores, y), 6)
    entry["threshold_from"], entry["auc"], entry["auc_on"] = source, auc(*gate), gate_on
    if entry["auc"] is not None and entry["auc"] < min_auc:
        entry["status"] = f"untrained: no better than chance (AUC {entry['auc']:.2f} on {gate_on})"
        return thr, False
    entry["status"], entry["threshold"] = "trained", thr
    return thr, True


GATES = ("pooled", "validation")


def fit_attribute_head(train_feats, Y, M, val_feats, val_Y, val_M, seed: int = 0,
                       min_positives: int = MIN_POSITIVES, weight_decay: float = 1e-2, min_auc: float = MIN_AUC,
                       gate: str = "pooled",
                       prior: tuple[np.ndarray, np.ndarray] | None = None) -> AttributeFit:
    """Train the attribute head on raw features; thresholds from validation (or CV); a report per key.

    A key is untrained (threshold None, output ~0) when it has fewer than ``min_positives``
    training positives, no negatives, or when its head ranks the validation (or out-of-fold)
    photos with an AUC below ``min_auc``: a tag no better than guessing is not emitted.
    """
    X, Xv = np.asarray(train_feats, np.float32), np.asarray(val_feats, np.float32)
    Y, M = np.asarray(Y, np.float32), np.asarray(M, bool)
    shape = (len(Xv), len(ATTRIBUTE_KEYS))
    val_Y, val_M = np.asarray(val_Y, np.float32).reshape(shape), np.asarray(val_M, bool).reshape(shape)
    n_pos, n_neg = (M & (Y > 0.5)).sum(0), (M & (Y < 0.5)).sum(0)
    trainable = (n_pos >= min_positives) & (n_neg >= 1)
    W = np.zeros((len(ATTRIBUTE_KEYS), X.shape[1]), np.float32)
    b = np.full(len(ATTRIBUTE_KEYS), UNTRAINED_BIAS, np.float32)
    if trainable.any():
        cols = np.flatnonzero(trainable)
        W[cols], b[cols] = fit_linear(X, Y[:, cols], M[:, cols], weight_decay, seed, prior)
    val_scores = head_scores(W, b, Xv)
    v_pos, v_neg = (val_M & (val_Y > 0.5)).sum(0), (val_M & (val_Y < 0.5)).sum(0)
    need_cv = [j for j in np.flatnonzero(trainable) if v_pos[j] < MIN_VAL_POSITIVES or v_neg[j] < 1]
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    cv_cols = list(np.flatnonzero(trainable)) if gate == "pooled" else need_cv
    oof = _oof_scores(X, Y, M, cv_cols, weight_decay, seed, prior) if cv_cols else {}
    thresholds: dict[str, float | None] = {}
    report: dict[str, dict] = {}
    for j, key in enumerate(ATTRIBUTE_KEYS):
        vm = val_M[:, j]
        vy = val_Y[vm, j]
        entry = report[key] = {
            "positives": int(n_pos[j]), "negatives": int(n_neg[j]), "support": int(np.sum(vy == 1)),
            "val_negatives": int(np.sum(vy == 0)), "precision": None, "recall": None, "f1": None, "auc": None,
            "threshold": None, "threshold_from": None, "auc_on": None,
            "status": f"untrained: {n_pos[j]} positives" if n_pos[j] < min_positives else "untrained: no negatives"}
        thr, ok = None, False
        if trainable[j]:
            own = (val_scores[vm, j], vy, "validation") if j not in need_cv else (*oof[j], "cross-validation")
            if gate == "pooled":      # more photos than the validation batch alone: a steadier verdict
                pooled = (np.r_[oof[j][0], val_scores[vm, j]], np.r_[oof[j][1], vy])
                thr, ok = _judge(entry, *own, pooled, "out-of-fold training + validation photos", min_auc)
            else:
                thr, ok = _judge(entry, *own, own[:2], own[2], min_auc)
        if thr is not None and entry["support"]:
            entry.update(scores_metrics(val_scores[vm, j], vy, thr))   # of the rejected head, too
        if not ok:
            W[j], b[j] = 0.0, UNTRAINED_BIAS
        thresholds[key] = entry["threshold"]
    return AttributeFit(folded_head(W, b), thresholds, report, [k for k, t in thresholds.items() if t is None],
                        head_scores(W, b, Xv))


def predict_attributes(head, feats: np.ndarray) -> np.ndarray:
    """Attribute probabilities (N x K) of raw features through a torch AttributeHead."""
    import torch

    with torch.no_grad():
        return torch.sigmoid(head(torch.from_numpy(np.asarray(feats, np.float32)))).numpy()
