"""Which photos the attribute mode shows next: one grid chosen by the current head.

With a head, the grid holds first the photos it is least sure of (scores nearest its threshold, in logit
terms, most uncertain first): answers there move the head the most. Then, as a check on what the head
calls present, the photos it scores highest among the rest (highest first): a head that is wrong about
them is caught at once, and a rare attribute gets its positives.

Without a head (no answers yet, or only one kind), the grid is spread over the photos instead: the
photo nearest each centre of a k-means clustering of their features, largest cluster first, so the first
answers cover what the class looks like rather than one corner of it.

The labelling app and bench/bench_attribute_curve.py call ``pick_grid``, so the bench measures the app's picks.
"""
from __future__ import annotations

import numpy as np

GRID_SIZE = 24
CHECK_SHARE = 4     # a quarter of a grid: the head's highest-scored photos, shown as a check


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def spread_picks(features: np.ndarray, size: int, seed: int = 0) -> list[int]:
    """``size`` rows of ``features`` spread over them: the row nearest each k-means centre, the largest
    cluster first (all rows when there are no more than ``size``)."""
    from sklearn.cluster import KMeans

    X = np.asarray(features, np.float64)
    if len(X) <= size:
        return list(range(len(X)))
    X = X / np.linalg.norm(X, axis=1, keepdims=True).clip(1e-12)
    km = KMeans(n_clusters=size, n_init=3, random_state=seed).fit(X)
    sizes = np.bincount(km.labels_, minlength=size)
    picks = []
    for c in sorted(range(size), key=lambda c: (-sizes[c], c)):
        members = np.flatnonzero(km.labels_ == c)
        picks.append(int(members[np.argmin(np.linalg.norm(X[members] - km.cluster_centers_[c], axis=1))]))
    return picks


def pick_grid(features: np.ndarray, scores: np.ndarray | None = None, threshold: float = 0.5,
              size: int = GRID_SIZE, checks: int | None = None, seed: int = 0) -> list[int]:
    """Row numbers of the open photos (``features``: N x D, ``scores``: the head's N probabilities, or None
    without a head) to show next, in the grid's order: the ``size - checks`` whose scores lie nearest
    ``threshold``, then the ``checks`` (default: a ``CHECK_SHARE``-th of the grid) highest-scored of the
    rest; without scores, ``spread_picks``."""
    checks = size // CHECK_SHARE if checks is None else checks
    n = len(features)
    size = min(size, n)
    if scores is None:
        return spread_picks(features, size, seed)
    scores = np.asarray(scores, np.float64)
    margin = np.abs(_logit(scores) - _logit(np.array(threshold)))
    unsure = [int(i) for i in np.argsort(margin, kind="stable")[:size - min(checks, size)]]
    taken = set(unsure)
    rest = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in taken]
    return unsure + rest[:size - len(unsure)]
