"""Nearest neighbours of photo embeddings: an annoy index that knows its photos.

An annoy index answers "which photos look like this one" in milliseconds at
crawl scale (angular distance on the embeddings). ``NeighbourIndex`` keeps the
photo path of every item next to the index, saves both side by side
(``index.ann`` + ``index_paths.json``) and returns cosine similarities rather
than annoy's angular distances (``cos = 1 - d**2 / 2``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roomclf.errors import RoomclfError

INDEX_FILE = "index.ann"
PATHS_FILE = "index_paths.json"


class NeighbourError(RoomclfError):
    """A bad index request (empty input, k out of range, unreadable index folder)."""


@dataclass
class Neighbours:
    """k nearest items of each query: item numbers (-1 where fewer were found) and cosine similarities."""
    items: np.ndarray        # N x k int
    sims: np.ndarray         # N x k float32 (nan where items == -1)


class NeighbourIndex:
    def __init__(self, annoy_index, paths: list[str], dim: int, n_trees: int):
        self.annoy, self.paths, self.dim, self.n_trees = annoy_index, list(paths), dim, n_trees

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def build(cls, paths: list[str], vectors: np.ndarray, n_trees: int = 50, seed: int = 0) -> NeighbourIndex:
        """An angular annoy index over ``vectors`` (row i is photo ``paths[i]``)."""
        from annoy import AnnoyIndex

        vectors = np.asarray(vectors, dtype=np.float32)
        if len(paths) != len(vectors):
            raise NeighbourError(f"{len(paths)} paths but {len(vectors)} vectors")
        if not len(paths):
            raise NeighbourError("cannot build a neighbour index over no photos")
        index = AnnoyIndex(vectors.shape[1], "angular")
        index.set_seed(seed)
        for i, v in enumerate(vectors):
            index.add_item(i, v)
        index.build(max(1, int(n_trees)), n_jobs=1)
        return cls(index, paths, vectors.shape[1], int(n_trees))

    def save(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``index.ann`` and ``index_paths.json`` into ``folder`` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ann, meta = folder / INDEX_FILE, folder / PATHS_FILE
        tmp = folder / f".{INDEX_FILE}.tmp{os.getpid()}"
        self.annoy.save(str(tmp))
        # annoy mmaps the file it saved to; reload from the final name after the move.
        self.annoy.unload()
        os.replace(tmp, ann)
        self.annoy.load(str(ann))
        tmp_meta = folder / f".{PATHS_FILE}.tmp{os.getpid()}"
        tmp_meta.write_text(json.dumps({"dim": self.dim, "metric": "angular", "n_trees": self.n_trees,
                                        "paths": self.paths}))
        os.replace(tmp_meta, meta)
        return ann, meta

    @classmethod
    def load(cls, folder: str | os.PathLike) -> NeighbourIndex:
        from annoy import AnnoyIndex

        folder = Path(folder)
        try:
            meta = json.loads((folder / PATHS_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise NeighbourError(f"no readable {PATHS_FILE} in {folder}: {exc}") from None
        index = AnnoyIndex(int(meta["dim"]), "angular")
        index.load(str(folder / INDEX_FILE))
        if index.get_n_items() != len(meta["paths"]):
            raise NeighbourError(f"{folder}: index holds {index.get_n_items()} items, paths file {len(meta['paths'])}")
        return cls(index, meta["paths"], int(meta["dim"]), int(meta.get("n_trees", 0)))

    def query(self, vectors: np.ndarray, k: int, search_k: int = -1, progress: str | None = None) -> Neighbours:
        """The k nearest items of each query vector (``progress``: a bar with that title)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        return self._collect([self.annoy.get_nns_by_vector(v, k, search_k=search_k, include_distances=True)
                              for v in _bar(vectors, progress)], k)

    def query_items(self, items: list[int] | np.ndarray, k: int, search_k: int = -1,
                    exclude_self: bool = True, progress: str | None = None) -> Neighbours:
        """The k nearest other items of indexed items (the item itself left out)."""
        got = []
        for i in _bar(list(items), progress):
            ids, dist = self.annoy.get_nns_by_item(int(i), k + 1, search_k=search_k, include_distances=True)
            if exclude_self:
                keep = [j for j, x in enumerate(ids) if x != i][:k]
                ids, dist = [ids[j] for j in keep], [dist[j] for j in keep]
            got.append((ids[:k], dist[:k]))
        return self._collect(got, k)

    @staticmethod
    def _collect(found: list[tuple[list[int], list[float]]], k: int) -> Neighbours:
        items = np.full((len(found), k), -1, dtype=np.int64)
        sims = np.full((len(found), k), np.nan, dtype=np.float32)
        for row, (ids, dist) in enumerate(found):
            items[row, :len(ids)] = ids
            sims[row, :len(ids)] = 1.0 - np.square(np.asarray(dist, dtype=np.float32)) / 2.0
        return Neighbours(items, sims)


def _bar(items, title: str | None):
    if not title or len(items) < 2000:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=title, unit="photo", dynamic_ncols=True)
