"""Embeddings: pooled penultimate features of an ImageNet backbone, cached on disk.

The cache is one SQLite file per backbone and input size in the working-data folder
(a registry change of a backbone's input size starts a new file), keyed by
(photo path, file size, mtime): a rerun computes only new or changed photos,
and a killed run keeps every finished chunk. Photos that cannot be read are
cached with their error so they are not retried. Vectors are stored raw (so
the ImageNet head can still be applied, e.g. for zero-shot prelabels) and
returned L2-normalised unless ``normalize=False``.
"""
from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf.photos import PhotoError, model_input
from roomclf.settings import DEFAULT_BACKBONE, embedding_dir


@dataclass
class Embeddings:
    backbone: str
    paths: list[str]                       # photos that have a vector, in input order
    vectors: np.ndarray                    # len(paths) x D float32
    errors: dict[str, str] = field(default_factory=dict)  # path -> reason, for unreadable photos
    computed: int = 0                      # how many were computed (not from the cache) this call

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


class Embedder:
    """A backbone split into feature extractor and ImageNet head, ready for CPU inference."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE):
        import torch

        from roomclf.models.backbones import (
            build_backbone,
            get_spec,
            normalizer,
            split_backbone,
        )

        self.spec = get_spec(backbone)
        body, pool, head = split_backbone(backbone, build_backbone(backbone, pretrained=True))
        self.features = torch.nn.Sequential(body, pool).eval()
        self.head = head.eval()
        self.normalize = normalizer(self.spec)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = self.normalize(torch.from_numpy(batch))
            return self.features(x).numpy().astype(np.float32)

    def imagenet_logits(self, raw: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.head(torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))).numpy()


def _cache(backbone: str) -> sqlite3.Connection:
    from roomclf.models.backbones import get_spec

    db = sqlite3.connect(embedding_dir() / f"{backbone}-{get_spec(backbone).input_size}px.sqlite", timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS emb (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
               "vec BLOB, error TEXT)")
    return db


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _load_one(args: tuple[Path, int]) -> np.ndarray | str:
    path, size = args
    try:
        return model_input(path, size)
    except PhotoError as exc:
        return exc.reason


def embed(root: str | os.PathLike, paths: list[str], backbone: str = DEFAULT_BACKBONE,
          batch_size: int = 32, normalize: bool = True, progress: bool = True,
          embedder: Embedder | None = None) -> Embeddings:
    """Embeddings of ``paths`` (relative to ``root``), computing only what the cache lacks."""
    root = Path(root)
    stamps: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    for p in paths:
        try:
            stamps[p] = _stamp(root / p)
        except OSError as exc:
            errors[p] = f"cannot read file ({exc.strerror or exc})"
    found: dict[str, np.ndarray] = {}
    with closing(_cache(backbone)) as db:
        for chunk in range(0, len(paths), 500):
            part = [p for p in paths[chunk:chunk + 500] if p in stamps]
            if not part:
                continue
            q = f"SELECT path, size, mtime_ns, vec, error FROM emb WHERE path IN ({','.join('?' * len(part))})"
            for path, size, mtime, vec, err in db.execute(q, part):
                if (size, mtime) != stamps[path]:
                    continue
                if err:
                    errors[path] = err
                else:
                    found[path] = np.frombuffer(vec, dtype=np.float32)
        todo = [p for p in paths if p in stamps and p not in found and p not in errors]
        computed = 0
        if todo:
            embedder = embedder or Embedder(backbone)
            size = embedder.spec.input_size
            bar = _progress(len(todo), f"embedding ({backbone})", progress)
            with ThreadPoolExecutor(max_workers=2) as pool:
                for start in range(0, len(todo), batch_size):
                    part = todo[start:start + batch_size]
                    loaded = list(pool.map(_load_one, [(root / p, size) for p in part]))
                    ok = [(p, a) for p, a in zip(part, loaded) if not isinstance(a, str)]
                    rows = []
                    for p, a in zip(part, loaded):
                        if isinstance(a, str):
                            errors[p] = a
                            rows.append((p, *stamps[p], None, a))
                    if ok:
                        vecs = embedder(np.stack([a for _, a in ok]))
                        for (p, _), v in zip(ok, vecs):
                            found[p] = v
                            rows.append((p, *stamps[p], v.tobytes(), None))
                    db.executemany("INSERT OR REPLACE INTO emb VALUES (?,?,?,?,?)", rows)
                    db.commit()
                    computed += len(part)
                    bar.update(len(part))
            bar.close()
    have = [p for p in paths if p in found]
    dim = next(iter(found.values())).shape[0] if found else 0
    vectors = np.stack([found[p] for p in have]).astype(np.float32) if have else np.zeros((0, dim), np.float32)
    if normalize and len(vectors):
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    return Embeddings(backbone, have, vectors, {p: e for p, e in errors.items()}, computed)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="photo", disable=not enabled, dynamic_ncols=True)
