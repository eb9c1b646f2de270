"""Near-duplicate search: photo pairs whose embeddings are at least ``DUPLICATE_SIMILARITY`` alike,
found over a ``NeighbourIndex``.

``near_duplicates`` finds pairs of photos that are the same picture (a home
relisted in another listing or batch), so training can keep them out of
validation.
"""
from __future__ import annotations

import os

import numpy as np

from roomclf.models.neighbours import NeighbourIndex
from roomclf.settings import EMBEDDING_BACKBONE

DUPLICATE_SIMILARITY = 0.97   # cosine at and above which two photos are the same picture (re-listed, resized)


def duplicate_pairs(paths: list[str], vectors: np.ndarray, threshold: float = DUPLICATE_SIMILARITY,
                    k: int = 10, n_trees: int = 20,
                    index: NeighbourIndex | None = None) -> list[tuple[str, str, float]]:
    """Pairs of photos whose embeddings have cosine similarity >= ``threshold``, most similar first.

    Each photo's ``k`` nearest neighbours are checked, so a group of more than
    k+1 copies of one picture reports only its k nearest pairs per photo.
    """
    if len(paths) < 2:
        return []
    index = index or NeighbourIndex.build(paths, vectors, n_trees=n_trees)
    found = index.query_items(range(len(index)), min(k, len(index) - 1), progress="near-duplicates")
    pairs: dict[tuple[int, int], float] = {}
    for i, (ids, sims) in enumerate(zip(found.items, found.sims)):
        for j, s in zip(ids, sims):
            if j >= 0 and s >= threshold:
                key = (min(i, int(j)), max(i, int(j)))
                pairs[key] = max(pairs.get(key, -1.0), float(s))
    return sorted(((str(index.paths[a]), str(index.paths[b]), s) for (a, b), s in pairs.items()),
                  key=lambda t: (-t[2], t[0], t[1]))


def near_duplicates(root: str | os.PathLike, paths: list[str], backbone: str = EMBEDDING_BACKBONE,
                    threshold: float = DUPLICATE_SIMILARITY, progress: bool = False) -> list[tuple[str, str, float]]:
    """Near-duplicate photo pairs ``(a, b, similarity)`` among ``paths`` (relative to ``root``).

    Embeddings come from the cache (missing ones are computed); unreadable
    photos are left out. Training uses this to keep copies out of validation.
    """
    from roomclf.models.embeddings import embed

    emb = embed(root, list(paths), backbone, progress=progress)
    return duplicate_pairs(emb.paths, emb.vectors, threshold)
