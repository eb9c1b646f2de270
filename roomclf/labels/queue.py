"""The labelling queue: which photo a person should look at next, and confirm pages.

Human time is best spent on photos the model is unsure about *and* that are
unlike the ones already queued. ``value_order`` is a farthest-first (k-center)
traversal of the embeddings in which each photo's distance to the queued ones is
weighted by its uncertainty (1 - margin between the top two classes): the first
photos are uncertain ones spread over the whole batch, confident near-duplicates
come last. The traversal costs one pass over the batch per pick, so it runs for the
first ``QUEUE_HEAD`` picks (more than a person labels in a session); the rest of a
crawl-size batch follows in the order of its value at that point
(bench/bench_crawl.py: a 20,000-photo batch's first labelling page).

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


QUEUE_HEAD = 3000


def value_order(vectors: np.ndarray, margin: np.ndarray, uncertainty_weight: float = 1.0,
                head: int = QUEUE_HEAD) -> list[int]:
    """Indices of all rows, most valuable first (uncertainty-weighted farthest-first traversal).

    ``vectors``: N x D embeddings (L2-normalised); ``margin``: N margins in [0, 1].
    With ``uncertainty_weight=0`` this is plain k-center; the first pick is the most
    uncertain photo. After ``head`` picks the others follow by their value then
    (distance to the nearest pick times uncertainty), most valuable first.
    """
    n = len(vectors)
    if n == 0:
        return []
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    sq = np.einsum("ij,ij->i", vectors, vectors)

    def distance_to(i: int) -> np.ndarray:           # one matrix-vector product per pick
        return np.sqrt(np.maximum(sq + sq[i] - 2.0 * (vectors @ vectors[i]), 0.0))

    weight = (1.0 - np.clip(margin, 0.0, 1.0)) ** uncertainty_weight + 1e-3
    first = int(np.argmin(margin))
    order = [first]
    taken = np.zeros(n, bool)
    taken[first] = True
    nearest = distance_to(first)
    for _ in range(min(n, max(head, 1)) - 1):
        value = np.where(taken, -np.inf, nearest * weight)
        nxt = int(np.argmax(value))
        order.append(nxt)
        taken[nxt] = True
        nearest = np.minimum(nearest, distance_to(nxt))
    rest = np.flatnonzero(~taken)
    return order + [int(i) for i in rest[np.argsort(-(nearest * weight)[rest], kind="stable")]]


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
