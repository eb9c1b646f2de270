"""The labelling queue: which photo a person should look at next, and confirm pages.

A model trained on a handful of labels is a poor judge of what it is unsure of,
so the queue starts with photos that *represent* the batch and only then turns
to the model's doubts. ``value_order``:

1. **Representatives first** (``DIVERSE_HEAD`` of them, fewer once photos are
   labelled): the batch's embeddings are grouped by k-means and each group's
   most central photo (its medoid) is a candidate; candidates are taken greedily,
   each time the one that best covers the groups not yet covered, weighted by
   group size (photos already labelled count as covering their groups). Every
   prefix of this order is a spread sample of the batch, big groups first.
2. **Then uncertainty, spread over the batch**: the photos are grouped again
   (``SPREAD_GROUPS`` k-means groups) and taken round by round, one per group per
   round, each group's least confident (smallest margin between the top two
   classes) first and, within a round, the least confident first. The person
   never sees twenty near-identical doubtful photos in a row.

k-means is fitted on a sample of at most ``KMEANS_SAMPLE`` photos and then
assigns every photo, so a crawl-size batch costs a few matrix products
(bench/bench_crawl.py times a 20,000-photo batch's first labelling page).
The head size and the groups were chosen on the tuning batches of
bench/bench_labels.py (the simulated labelling loop), whose TEST curve compares
this order with random picks.

``confirm_pages`` is the other way to spend time: the confident suggestions,
grouped by suggested class, in pages a person accepts with one key.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row (0 = a coin toss, 1 = certain)."""
    if probs.shape[1] < 2:
        return np.ones(len(probs), np.float32)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).astype(np.float32)


DIVERSE_HEAD = 100        # representatives before the model's doubts (chosen on TUNE: bench/bench_labels.py)
SPREAD_GROUPS = 50        # k-means groups the uncertain photos are spread over (same)
KMEANS_SAMPLE = 4000      # photos k-means is fitted on; every photo is then assigned
KMEANS_ITERS = 20


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to length 1 (zero rows stay zero)."""
    v = np.asarray(vectors, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)


def kmeans(unit: np.ndarray, k: int, seed: int = 0, iters: int = KMEANS_ITERS,
           sample: int = KMEANS_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means of L2-normalised rows: (centres k' x D, group of every row), k' = min(k, rows).

    k-means++ seeding and Lloyd steps on a sample of at most ``sample`` rows (cosine similarity), then
    every row joins its most similar centre. Deterministic for a given ``seed``."""
    n = len(unit)
    k = max(1, min(int(k), n))
    rng = np.random.default_rng(seed)
    fit = unit[np.sort(rng.choice(n, sample, replace=False))] if n > sample else unit
    centres = np.empty((k, unit.shape[1]), np.float32)
    centres[0] = fit[rng.integers(len(fit))]
    gap = np.maximum(2.0 - 2.0 * (fit @ centres[0]).astype(np.float64), 0.0)   # squared distance to the nearest centre
    for c in range(1, k):
        total = float(gap.sum())
        pick = int(rng.choice(len(fit), p=gap / total)) if total > 0 else int(rng.integers(len(fit)))
        centres[c] = fit[pick]
        gap = np.minimum(gap, np.maximum(2.0 - 2.0 * (fit @ centres[c]), 0.0))
    for _ in range(iters):
        group = np.argmax(fit @ centres.T, axis=1)
        members = np.zeros((k, len(fit)), np.float32)
        members[group, np.arange(len(fit))] = 1.0
        sums = members @ fit
        norms = np.linalg.norm(sums, axis=1)
        moved = norms > 0                                        # an empty group keeps its centre
        new = centres.copy()
        new[moved] = sums[moved] / norms[moved, None]
        if np.allclose(new, centres):
            break
        centres = new
    return centres, np.argmax(unit @ centres.T, axis=1)


def representatives(unit: np.ndarray, k: int, labelled: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """Medoids of ``k`` k-means groups of ``unit`` (L2-normalised rows), in greedy coverage order.

    Each pick is the medoid that most raises the size-weighted similarity of every group's medoid to its
    nearest pick; rows of ``labelled`` (a boolean mask) count as picked already and are never returned."""
    centres, group = kmeans(unit, k, seed)
    closeness = np.einsum("ij,ij->i", unit, centres[group])
    medoids, sizes = [], []
    for g in range(len(centres)):
        members = np.flatnonzero(group == g)
        if len(members):
            medoids.append(int(members[np.argmax(closeness[members])]))
            sizes.append(len(members))
    medoids, sizes = np.array(medoids), np.array(sizes, np.float64)
    sim = unit[medoids] @ unit[medoids].T                       # medoid (row, as demand) x medoid (candidate)
    covered = np.full(len(medoids), -1.0)
    if labelled is not None and labelled.any():
        covered = np.maximum(covered, (unit[medoids] @ unit[np.flatnonzero(labelled)].T).max(axis=1))
    open_ = np.ones(len(medoids), bool) if labelled is None else ~labelled[medoids]
    order = []
    while open_.any():
        gain = (sizes[:, None] * np.maximum(sim - covered[:, None], 0.0)).sum(axis=0)
        gain[~open_] = -1.0
        best = int(np.argmax(gain))
        order.append(int(medoids[best]))
        open_[best] = False
        covered = np.maximum(covered, sim[:, best])
    return order


def spread_by_doubt(margin: np.ndarray, group: np.ndarray, skip: set[int] = frozenset()) -> list[int]:
    """Rows (except ``skip``) in rounds of one per group: each group's least confident first; within a
    round, least confident first (stable)."""
    rows = np.array([i for i in np.argsort(margin, kind="stable") if int(i) not in skip], dtype=np.int64)
    turn = np.zeros(len(rows), np.int64)
    taken: dict[int, int] = {}
    for pos, i in enumerate(rows):
        g = int(group[i])
        turn[pos] = taken.get(g, 0)
        taken[g] = turn[pos] + 1
    return [int(i) for i in rows[np.argsort(turn, kind="stable")]]


def value_order(vectors: np.ndarray, margin: np.ndarray, labelled: np.ndarray | None = None,
                diverse: int = DIVERSE_HEAD, groups: int = SPREAD_GROUPS, seed: int = 0) -> list[int]:
    """Indices of all rows, the photo a person should label next first (see the module docstring).

    ``vectors``: N x D embeddings; ``margin``: N margins in [0, 1] (``margins``); ``labelled``: optional
    N booleans, photos a person has labelled already: they shorten the representatives' head (``diverse``
    minus their count) and count as covering their groups. Labelled rows still appear in the order.
    """
    n = len(vectors)
    if n == 0:
        return []
    unit = unit_rows(vectors)
    margin = np.asarray(margin, np.float32)
    done = 0 if labelled is None else int(np.count_nonzero(labelled))
    head = representatives(unit, diverse, labelled, seed)[:max(0, diverse - done)] if diverse > 0 else []
    group = kmeans(unit, groups, seed + 1)[1] if groups > 1 else np.zeros(n, np.int64)
    return head + spread_by_doubt(margin, group, set(head))


def margin_order(margin: np.ndarray) -> list[int]:
    """The fallback without embeddings: least confident first (stable)."""
    return [int(i) for i in np.argsort(margin, kind="stable")]


@dataclass(frozen=True)
class Page:
    label: str
    paths: tuple[str, ...]
    confidences: tuple[float, ...]


def confirm_pages(suggestions: dict[str, tuple[str, float]], page_size: int = 24,
                  classes: list[str] | None = None) -> list[Page]:
    """Suggestions {path: (label, confidence)} -> pages of one suggested class each.

    Within a class the most confident come first, so early pages are the easy ones
    to accept whole; classes follow ``classes`` order (default: alphabetical).
    """
    by_class: dict[str, list[tuple[float, str]]] = {}
    for path, (label, conf) in suggestions.items():
        by_class.setdefault(label, []).append((-(conf or 0.0), path))
    pages = []
    for label in classes or sorted(by_class):
        items = sorted(by_class.get(label, []))
        for start in range(0, len(items), page_size):
            chunk = items[start:start + page_size]
            pages.append(Page(label, tuple(p for _, p in chunk), tuple(-c for c, _ in chunk)))
    return pages
