"""Multi-task fine-tuning: the body learns the attributes beside the rooms (``Recipe.attribute_loss_weight``).

Each photo's attribute labels travel with it through the DataLoaders as one target per ``ATTRIBUTE_KEYS``
key: 1 present, 0 absent, ``UNKNOWN`` not labelled (``photo_targets``, from the label store as the
attribute heads read it: ``roomclf.train.attributes.attribute_targets``). ``attribute_loss_callback`` adds
``weight`` x the masked, class-balanced BCE of the network's own ``attribute_head`` (``masked_attribute_loss``)
to the room loss: an unknown cell counts for nothing, so a photo without attribute labels adds only its
room loss.

After training, ``attribute_fit`` is the one choice of the attribute head the export carries: today's linear
heads fitted on the trained body's features (``fit_attribute_head``); and when the body was trained with
an attribute head, that head's row for every key the validation photos can judge (at least
``MIN_VAL_POSITIVES`` positives and a negative), its threshold picked on them and gated by their AUC as the
linear heads' are. A key they cannot judge keeps its linear head (thresholds from cross-validation): the
head trained with the body saw every training photo, so it has no out-of-fold scores.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from roomclf.taxonomy import ATTRIBUTE_KEYS
from roomclf.train.config import TrainingError

UNKNOWN = -1.0
TRAINED_WITH_BODY = "trained with the body"
LINEAR_ON_FEATURES = "linear on the trained body's features"


# ---- targets ------------------------------------------------------------------------------
def encode_targets(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    """(Y, M) of ``attribute_targets`` -> one float32 row per photo: Y where known (M), ``UNKNOWN`` elsewhere."""
    return np.where(np.asarray(M, bool), np.asarray(Y, np.float32), np.float32(UNKNOWN)).astype(np.float32)


def unknown_row() -> list[float]:
    """The targets of a photo without attribute labels."""
    return [UNKNOWN] * len(ATTRIBUTE_KEYS)


def photo_targets(store, room_labels: dict[str, str], paths: Iterable[str], sources) -> dict[str, np.ndarray]:
    """path -> its attribute targets, for the photos of ``paths`` with at least one known cell (labels of
    ``sources``, judged within the photo's class ``room_labels[path]``)."""
    from roomclf.train.attributes import attribute_targets

    paths = list(paths)
    Y, M = attribute_targets(paths, store, room_labels, sources)
    rows = encode_targets(Y, M)
    return {p: rows[i] for i, p in enumerate(paths) if M[i].any()}


def check_targets(targets: dict[str, np.ndarray], train_paths: Iterable[str]) -> None:
    """Multi-task needs training photos with attribute labels (``photo_targets``): a ``TrainingError`` in one
    line when none has."""
    if not any(p in targets for p in train_paths):
        raise TrainingError("recipe attribute_loss_weight is on, but none of the training photos has an attribute "
                            "label (tick them in the labelling app, or `roomclf import-labels --attributes FILE.csv`)")


def key_weights(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive weight, negative weight) per key from the training targets (N x K): each key's positives
    and its negatives weigh half each on average, as in the linear heads, so few positives are not drowned
    (the positive rate is kept in [0.02, 0.98])."""
    t = np.asarray(targets, np.float32).reshape(-1, len(ATTRIBUTE_KEYS))
    pos, neg = (t == 1).sum(0), (t == 0).sum(0)
    rate = np.clip(pos / np.maximum(pos + neg, 1), 0.02, 0.98)
    return (0.5 / rate).astype(np.float32), (0.5 / (1 - rate)).astype(np.float32)


def masked_attribute_loss(logits, targets, pos_weight, neg_weight):
    """The mean class-balanced BCE over the known cells of ``targets`` (``UNKNOWN`` cells count for nothing,
    gradient included); 0 for a batch without any known cell."""
    import torch
    import torch.nn.functional as F

    known = targets >= 0
    y = targets.clamp(min=0).to(logits.dtype)
    weight = torch.where(y > 0.5, pos_weight.to(logits.device), neg_weight.to(logits.device)) * known
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (bce * weight).sum() / known.sum().clamp(min=1)


def attribute_loss_callback(weight: float, train_targets: np.ndarray):
    """A fastai callback for a ``RoomNet`` built ``with_attributes`` and DataLoaders whose batches are
    (photos, attribute targets, room targets) (``roomclf.train.learner.build_dls`` with ``data.attributes``):
    the room loss and metrics see the room targets only; ``weight`` x ``masked_attribute_loss`` of the
    network's attribute head, on the pooled features of the same forward pass, is added to the loss."""
    import torch
    from fastai.callback.core import Callback

    pos_weight, neg_weight = (torch.from_numpy(w) for w in key_weights(train_targets))

    class AttributeLoss(Callback):
        order = -10          # before any other callback looks at the batch's targets

        def before_fit(self):
            self.pooled_features, self.attribute_targets = None, None
            self.pool_hook = self.learn.model.pool.register_forward_hook(self._keep)

        def _keep(self, module, args, output):
            self.pooled_features = output

        def before_batch(self):
            if len(self.learn.yb) > 1:
                self.attribute_targets, self.learn.yb = self.learn.yb[0], self.learn.yb[1:]
            else:
                self.attribute_targets = None

        def after_loss(self):
            if self.attribute_targets is None or self.pooled_features is None:
                return
            logits = self.learn.model.attribute_head(self.pooled_features)
            term = masked_attribute_loss(logits, self.attribute_targets, pos_weight, neg_weight)
            self.learn.loss_grad = self.learn.loss_grad + weight * term
            self.learn.loss = self.learn.loss_grad.clone()
            self.pooled_features = None

        def after_fit(self):
            self.pool_hook.remove()
            self.pool_hook, self.pooled_features, self.attribute_targets = None, None, None

    return AttributeLoss()


# ---- the exported head --------------------------------------------------------------------
def attribute_fit(net, root: str | os.PathLike, train_paths: list[str], Y: np.ndarray, M: np.ndarray,
                  valid_paths: list[str], vY: np.ndarray, vM: np.ndarray, size: int, seed: int):
    """The attribute fit the export carries (see the module docstring) and the validation photos it was
    judged on: ``(AttributeFit, paths)``; None when no training photo has an attribute label."""
    from roomclf.train.attributes import fit_attribute_head
    from roomclf.train.predict import raw_features

    keep, vkeep = np.asarray(M).any(1), np.asarray(vM).any(1)   # a photo without a known cell teaches nothing
    if not keep.any():
        return None
    feats = raw_features(net, root, [p for p, k in zip(train_paths, keep) if k], size)
    valid = [p for p, k in zip(valid_paths, vkeep) if k]
    vfeats = raw_features(net, root, valid, size) if valid else np.zeros((0, feats.shape[1]), np.float32)
    fit = fit_attribute_head(feats, Y[keep], M[keep], vfeats, vY[vkeep], vM[vkeep], seed=seed)
    if getattr(net, "attribute_head", None) is not None:
        fit = with_trained_rows(fit, net.attribute_head, vfeats, vY[vkeep], vM[vkeep])
    return fit, valid


def with_trained_rows(fit, trained_head, val_feats: np.ndarray, val_Y: np.ndarray, val_M: np.ndarray):
    """``fit`` (an ``AttributeFit`` of linear heads) with the rows of ``trained_head`` (the attribute head
    trained with the body) for every key it may train that the validation photos can judge: threshold
    picked on them (``choose_threshold``), emitted only when their AUC reaches ``MIN_AUC``. Every report
    entry says which head it holds (``head``)."""
    from roomclf.metrics import auc
    from roomclf.train.attributes import (
        MIN_AUC,
        MIN_POSITIVES,
        MIN_VAL_POSITIVES,
        UNTRAINED_BIAS,
        AttributeFit,
        choose_threshold,
        folded_head,
        head_scores,
        scores_metrics,
    )

    W = fit.head.linear.weight.detach().cpu().numpy().copy()
    b = fit.head.linear.bias.detach().cpu().numpy().copy()
    tW = trained_head.linear.weight.detach().cpu().numpy()
    tb = trained_head.linear.bias.detach().cpu().numpy()
    val_Y, val_M = np.asarray(val_Y, np.float32), np.asarray(val_M, bool)
    scores = head_scores(tW, tb, np.asarray(val_feats, np.float32))
    thresholds, report = dict(fit.thresholds), {k: dict(e) for k, e in fit.report.items()}
    for j, key in enumerate(ATTRIBUTE_KEYS):
        entry = report[key]
        vy = val_Y[val_M[:, j], j]
        judged = (entry["positives"] >= MIN_POSITIVES and entry["negatives"] >= 1
                  and (vy == 1).sum() >= MIN_VAL_POSITIVES and (vy == 0).sum() >= 1)
        if not judged:
            entry["head"] = LINEAR_ON_FEATURES if thresholds[key] is not None else None
            continue
        s = scores[val_M[:, j], j]
        thr, area = round(choose_threshold(s, vy), 6), auc(s, vy)
        entry.update(head=TRAINED_WITH_BODY, threshold_from="validation", auc=area, auc_on="validation photos",
                     **scores_metrics(s, vy, thr))
        if area is not None and area < MIN_AUC:
            entry.update(status=f"untrained: no better than chance (AUC {area:.2f} on validation photos)",
                         threshold=None, head=None)
            W[j], b[j] = 0.0, UNTRAINED_BIAS
        else:
            entry.update(status="trained", threshold=thr)
            W[j], b[j] = tW[j], tb[j]
        thresholds[key] = entry["threshold"]
    return AttributeFit(folded_head(W, b), thresholds, report, [k for k, t in thresholds.items() if t is None],
                        head_scores(W, b, np.asarray(val_feats, np.float32)))
