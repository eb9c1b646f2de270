"""Embeddings: pooled penultimate features of an ImageNet backbone, run through onnxruntime, cached on disk.

The backbone is exported once per (backbone, input size, precision) into the embedding folder as one
ONNX graph with the normalisation baked in and two outputs, ``features`` (the pooled vector, the
embedding) and ``logits`` (the ImageNet head), so every consumer feeds plain [0, 1] RGB from
``roomclf.photos.model_input``. Why not torch eager: bench/bench_embed.py runs both on the same photos.

``int8`` is a static-int8 copy of that graph, calibrated on the photos being embedded; it is kept only
when its vectors agree with fp32's on others of those photos (cosine of every photo at least ``INT8_MIN_COSINE``),
otherwise ``EmbeddingError`` says so and fp32 is what to use. It is made and checked on the host that embeds,
so where that CPU has VNNI its weights use the full int8 range (``roomclf.models.quantize.cpu_has_vnni``), and
the file says so in its name (``-vnni``): bench/bench_embed.py's int8 probe shows that with reduced-range
weights efficientnet_lite0's int8 vectors disagree with fp32's, and with full-range ones they agree.

The cache is one SQLite file per backbone, input size and precision (so an fp32 vector and an int8
vector never mix, nor two sizes), keyed by (photo path, file size, mtime) as ``roomclf.storage.cache_keys``
gives them for a local folder or an s3:// root: a rerun computes only new or changed photos, and a killed run
keeps every finished chunk. Photos that cannot be read are cached with their error so they are not retried.
Vectors are stored raw (so the ImageNet head can still be applied, e.g. for zero-shot prelabels) and returned
L2-normalised unless ``normalize=False``.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf import storage
from roomclf.errors import RoomclfError
from roomclf.models.onnx_file import open_session
from roomclf.parallel import BATCH_PHOTOS, ordered_map, workers_for
from roomclf.photos import model_inputs
from roomclf.settings import EMBEDDING_BACKBONE, cpus, embedding_dir

PRECISIONS = ("fp32", "int8")
INT8_MIN_COSINE = 0.99          # an int8 embedder is used only where every checked vector is this close
INT8_CALIBRATION_PHOTOS = 64
# Which export an embedding graph on disk came from: one made before padding was fixed and folded
# (roomclf.models.export_graph) computes the same vectors more slowly, so it is exported again.
GRAPH_VERSION = "fixed-padding"
_OUTPUTS = ("features", "logits")


class EmbeddingError(RoomclfError):
    """An embedder that cannot be built as asked (unknown precision, int8 that disagrees with fp32)."""


@dataclass
class Embeddings:
    backbone: str
    paths: list[str]                       # photos that have a vector, in input order
    vectors: np.ndarray                    # len(paths) x D float32
    errors: dict[str, str] = field(default_factory=dict)  # path -> reason, for unreadable photos
    computed: int = 0                      # how many were computed (not from the cache) this call

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def _stem(backbone: str, precision: str) -> str:
    from roomclf.models.backbones import get_spec

    if precision not in PRECISIONS:
        raise EmbeddingError(f"unknown embedding precision {precision!r}; one of {', '.join(PRECISIONS)}")
    return f"{backbone}-{get_spec(backbone).weights_size}px-{precision}"


def export_embedder(backbone: str, path: str | os.PathLike, fixed_padding: bool = True) -> Path:
    """Write ``backbone``'s pretrained network as an embedding graph at ``path`` (atomically):
    input ``image`` (N x 3 x S x S in [0, 1]), outputs ``features`` and ``logits``. ``fixed_padding``:
    ``roomclf.models.export_graph.export_graph``'s (off only to measure what it buys)."""
    import torch

    from roomclf.models.backbones import build_backbone, get_spec, normalizer, split_backbone
    from roomclf.models.export_graph import export_graph
    from roomclf.models.onnx_file import save_onnx

    spec = get_spec(backbone)
    body, pool, head = split_backbone(backbone, build_backbone(backbone, pretrained=True))

    class EmbedNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize, self.body, self.pool, self.head = normalizer(spec), body, pool, head

        def forward(self, image):
            features = self.pool(self.body(self.normalize(image)))
            return features, self.head(features)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = export_graph(EmbedNet(), spec.weights_size, list(_OUTPUTS), path.parent, fixed_padding=fixed_padding)
    meta = {"backbone": backbone, "input_size": spec.weights_size, "kind": "embedder", "precision": "fp32",
            "graph": GRAPH_VERSION if fixed_padding else "timm"}
    return save_onnx(graph, path, meta)


def _head_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet head's (weight D x 1000, bias) from the Gemm that makes ``logits`` in the graph, so
    cached raw vectors can be scored without running the network again."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    node = next(n for n in graph.node if "logits" in n.output)
    if node.op_type != "Gemm":
        raise EmbeddingError(f"{path.name}: the ImageNet head is a {node.op_type}, expected a Gemm")
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    weight = inits[node.input[1]]
    return (weight.T if trans_b else weight).astype(np.float32), inits[node.input[2]].astype(np.float32)


def embedder_file(backbone: str = EMBEDDING_BACKBONE, precision: str = "fp32",
                  root: str | os.PathLike | None = None, calibration: list[str] = ()) -> Path:
    """The exported embedding graph for ``backbone`` at its weights' size (``BackboneSpec.weights_size``), made on first use. ``int8``
    needs ``calibration`` photos (relative to ``root``) the first time, and is refused (``EmbeddingError``)
    when its vectors disagree with fp32's on them (on those it was not calibrated on, where there are any)."""
    from roomclf.models.quantize import cpu_has_vnni

    folder = embedding_dir() / "onnx"
    fp32 = folder / f"{_stem(backbone, 'fp32')}.onnx"
    vnni = cpu_has_vnni()          # this host makes, checks and runs the int8 copy: full range is safe on VNNI
    int8 = folder / f"{_stem(backbone, 'int8')}{'-vnni' if vnni else ''}.onnx"
    if not fp32.is_file() or _graph_version(fp32) != GRAPH_VERSION:
        export_embedder(backbone, fp32)
        for old in folder.glob(f"{_stem(backbone, 'int8')}*.onnx"):
            old.unlink(missing_ok=True)       # quantised from the graph it replaces
    if precision == "fp32":
        return fp32
    if not int8.is_file():
        _quantize_checked(fp32, int8, storage.resolve(root or "."), list(calibration), reduce_range=not vnni)
    return int8


def _graph_version(path: Path) -> str | None:
    import onnx

    from roomclf.models.onnx_file import read_meta

    return (read_meta(onnx.load(str(path), load_external_data=False)) or {}).get("graph")


def _quantize_checked(fp32: Path, int8: Path, root: Path | str, calibration: list[str], reduce_range: bool) -> None:
    from roomclf.models.quantize import calibration_sample, quantize_static_int8

    sample = calibration_sample(calibration, INT8_CALIBRATION_PHOTOS)
    if not sample:
        raise EmbeddingError("an int8 embedder is calibrated on photos, and none were given")
    # Agreement is judged on photos it was not calibrated on, where there are any: the quantiser fitted its
    # ranges to the calibration photos, so they are the ones it represents best.
    calibrated = set(sample)
    check = calibration_sample([p for p in calibration if p not in calibrated], INT8_CALIBRATION_PHOTOS) or sample
    with tempfile.TemporaryDirectory(dir=int8.parent) as tmp:
        candidate = quantize_static_int8(fp32, Path(tmp) / int8.name, root, sample, reduce_range=reduce_range)
        size = _input_size(fp32)
        arrays = model_inputs([storage.join(root, p) for p in check], size)[0]
        batch = np.stack(arrays)
        a, b = open_session(fp32, 1).run(["features"], {"image": batch})[0], open_session(candidate, 1).run(
            ["features"], {"image": batch})[0]
        cos = row_cosines(a, b)
        if float(cos.min()) < INT8_MIN_COSINE:
            raise EmbeddingError(f"int8 {int8.stem} disagrees with fp32 (lowest cosine {cos.min():.4f} on "
                                 f"{len(arrays)} photos{'' if check is sample else ' it was not calibrated on'}, "
                                 f"needs {INT8_MIN_COSINE}): use fp32")
        os.replace(candidate, int8)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b``: how close two embedders' vectors are."""
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-12)


def _input_size(path: Path) -> int:
    import onnx

    from roomclf.models.onnx_file import read_meta

    return int(read_meta(onnx.load(str(path)))["input_size"])


class Embedder:
    """One onnxruntime session over a backbone's embedding graph: features for photos, and the ImageNet
    head for raw feature vectors."""

    def __init__(self, backbone: str = EMBEDDING_BACKBONE, precision: str = "fp32", threads: int = 1,
                 root: str | os.PathLike | None = None, calibration: list[str] = ()):
        """``threads``: the session's intra-op threads; one suits ``embed``, which runs a batch per core."""
        from roomclf.models.backbones import get_spec

        self.spec = get_spec(backbone)
        self.precision = precision
        self.path = embedder_file(backbone, precision, root, calibration)
        self.threads = threads
        self.session = open_session(self.path, threads)
        self._head: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x 3 x S x S in [0, 1] -> N x D raw features."""
        return self.session.run(["features"], {"image": np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def imagenet_logits(self, raw: np.ndarray) -> np.ndarray:
        if self._head is None:
            self._head = _head_of(embedder_file(self.spec.name, "fp32"))
        weight, bias = self._head
        return np.ascontiguousarray(raw, dtype=np.float32) @ weight + bias


def _cache(backbone: str, precision: str) -> sqlite3.Connection:
    db = sqlite3.connect(embedding_dir() / f"{_stem(backbone, precision)}.sqlite", timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS emb (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
               "vec BLOB, error TEXT)")
    return db


def _stamps(root: Path | str, paths: list[str]) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """(path -> the cache key's (size, mtime) of every photo that exists, path -> reason of the rest): the
    storage layer's ``cache_keys``, so an s3:// root is keyed as a local folder is."""
    stamps, missing = storage.cache_keys(root, paths)
    return stamps, {p: f"cannot read file ({why})" for p, why in missing.items()}


def _lookup(db: sqlite3.Connection, stamps: dict[str, tuple[int, int]], paths: list[str]):
    """(path -> cached raw vector, path -> cached error) of ``paths`` whose cache entry matches its stamp."""
    found: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
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
    return found, errors


def pending(root: str | os.PathLike, paths: list[str], backbone: str = EMBEDDING_BACKBONE,
            precision: str = "fp32") -> list[str]:
    """The photos of ``paths`` the cache has no entry for (new or changed since), in input order."""
    stamps, _ = _stamps(storage.resolve(root), paths)
    with closing(_cache(backbone, precision)) as db:
        found, errors = _lookup(db, stamps, paths)
    return [p for p in paths if p in stamps and p not in found and p not in errors]


def store(root: str | os.PathLike, backbone: str, precision: str,
          rows: list[tuple[str, np.ndarray | None, str | None]]) -> None:
    """Keep ``(path, raw vector or None, error or None)`` rows in the cache, keyed by the photo's current
    stamp, in one transaction (for an engine that computes vectors elsewhere, e.g. ``roomclf.infer.embed``)."""
    stamps, _ = _stamps(storage.resolve(root), [p for p, _, _ in rows])
    with closing(_cache(backbone, precision)) as db:
        db.executemany("INSERT OR REPLACE INTO emb VALUES (?,?,?,?,?)",
                       [(p, *stamps[p], None if v is None else np.asarray(v, np.float32).tobytes(), err)
                        for p, v, err in rows if p in stamps])
        db.commit()


def embed(root: str | os.PathLike, paths: list[str], backbone: str = EMBEDDING_BACKBONE,
          batch_size: int = BATCH_PHOTOS, normalize: bool = True, progress: bool = True,
          embedder: Embedder | None = None, precision: str = "fp32") -> Embeddings:
    """Embeddings of ``paths`` (relative to ``root``), computing only what the cache lacks: a batch per
    core at a time (``roomclf.parallel``), the cache written as each batch finishes, in order."""
    root = storage.resolve(root)
    if embedder is not None:
        backbone, precision = embedder.spec.name, embedder.precision
    stamps, errors = _stamps(root, paths)
    with closing(_cache(backbone, precision)) as db:
        found, cached_errors = _lookup(db, stamps, paths)
        errors.update(cached_errors)
        todo = [p for p in paths if p in stamps and p not in found and p not in errors]
        computed = 0
        if todo:
            embedder = embedder or Embedder(backbone, precision, root=root, calibration=todo)
            size = embedder.spec.weights_size
            parts = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]
            bar = _progress(len(todo), f"embedding ({backbone}, {precision})", progress)

            def one(part: list[str]):
                arrays, readable, unreadable = model_inputs([storage.join(root, p) for p in part], size)
                vecs = embedder(np.stack(arrays)) if arrays else []
                return ([(part[i], exc.reason) for i, exc in unreadable.items()],
                        [(part[i], v) for i, v in zip(readable, vecs)])

            for part, (bad, good) in zip(parts, ordered_map(one, parts, workers_for(embedder.threads, cpus()))):
                errors.update(bad)
                found.update(good)
                db.executemany("INSERT OR REPLACE INTO emb VALUES (?,?,?,?,?)",
                               [(p, *stamps[p], None, why) for p, why in bad]
                               + [(p, *stamps[p], v.tobytes(), None) for p, v in good])
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
