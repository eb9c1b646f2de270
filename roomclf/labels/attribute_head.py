"""The few-shot head of one attribute: fitted on a person's yes/no answers in seconds, with a cross-validated
estimate of how good it is. The labelling app's attribute mode retrains it after every grid, and
bench/bench_attribute_curve.py runs the same loop.

The head is the product's attribute head for one key (``roomclf.train.attributes.fit_linear``: one
linear logit over raw embedding features, class-balanced BCE and an L2 penalty on standardised
features). Its threshold follows the product's rule (``choose_threshold``) on out-of-fold scores.

The estimate is honest about what it has seen: each photo's score comes from a head fitted without its
fold, and is cut at a threshold chosen on the other folds' scores only; precision, recall and F1 are
then taken over all answered photos at once (``roomclf.metrics.binary_scores``).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from roomclf.metrics import binary_scores, fold_ids
from roomclf.train.attributes import choose_threshold, fit_linear, head_scores

MIN_EACH = 2        # positives and negatives a head needs before it is fitted
FOLDS = 5


@dataclass(frozen=True)
class FewShotHead:
    weight: np.ndarray        # D
    bias: float
    threshold: float          # tag a photo when its score is at least this

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Probabilities (N) of raw features (N x D)."""
        return head_scores(self.weight[None, :], np.array([self.bias], np.float32),
                           np.asarray(features, np.float32))[:, 0]


@dataclass(frozen=True)
class HeadEstimate:
    positives: int
    negatives: int
    precision: float | None = None       # None: no head yet
    recall: float | None = None
    f1: float | None = None
    folds: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """A few hundred answers make tiny tensors: torch's thread pool only adds waiting to them, and on a
    busy machine it waits for cores other work holds. The previous setting is put back after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(features: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return fit_linear(features, y[:, None].astype(np.float32), np.ones((len(y), 1), bool), seed=seed)


def fit_head(features: np.ndarray, answers: np.ndarray, seed: int = 0,
             folds: int = FOLDS) -> tuple[FewShotHead | None, HeadEstimate]:
    """The head of raw ``features`` (N x D) for the 0/1 ``answers`` (N) and its cross-validated estimate;
    (None, counts and why) while there are fewer than ``MIN_EACH`` positives or negatives."""
    X, y = np.asarray(features, np.float32), np.asarray(answers).astype(np.int64)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos < MIN_EACH or neg < MIN_EACH:
        return None, HeadEstimate(pos, neg, note=f"a head needs at least {MIN_EACH} yes and {MIN_EACH} no answers")
    fold = fold_ids(y, folds, seed)
    oof = np.zeros(len(y))
    with _one_torch_thread():
        for f in range(folds):
            held = fold == f
            if held.any():
                W, b = _fit(X[~held], y[~held], seed)
                oof[held] = head_scores(W, b, X[held])[:, 0]
        W, b = _fit(X, y, seed)
    threshold = choose_threshold(oof, y)
    tagged = np.zeros(len(y), bool)
    for f in range(folds):
        held, rest = fold == f, fold != f
        thr = choose_threshold(oof[rest], y[rest]) if 0 < y[rest].sum() < rest.sum() else threshold
        tagged[held] = oof[held] >= thr
    s = binary_scores(y == 1, tagged)
    head = FewShotHead(W[0], float(b[0]), float(threshold))
    return head, HeadEstimate(pos, neg, s["precision"], s["recall"], s["f1"], folds)
