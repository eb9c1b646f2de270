"""Embeddings of many batches at once, on a Ray cluster.

The same embedding graph as ``roomclf.models.embeddings`` (one per backbone, size and precision) runs in a
pool of Ray actors, one single-threaded onnxruntime session each; each actor reads and decodes its own batches
(``decode_batch``, infer-all's shared loader), as infer-all's actors do, so a crawl's batches are embedded by
every node of the cluster together. The vectors come back to the driver, which keeps them in the one
embedding cache chunk by chunk: a killed run keeps every finished chunk and a rerun computes only the rest.
On one machine the local engine (``embed``) is as fast, since it already runs a batch per core; Ray pays when
there are more machines.
"""
from __future__ import annotations

import os

import numpy as np

from roomclf.infer.batch import decode_batch
from roomclf.models.embeddings import Embeddings, embed, embedder_file, pending, store
from roomclf.parallel import BATCH_PHOTOS
from roomclf.settings import EMBEDDING_BACKBONE


class GraphActor:
    """The Ray actor: one onnxruntime session over the embedding graph, loaded from its bytes (shipped
    through Ray's object store, so a worker needs nothing of this machine's disk); each call reads and
    decodes a batch of photos under ``root`` at ``size`` px, then embeds it."""

    def __init__(self, graph: bytes, root: str, size: int, threads: int = 1):
        from roomclf.models.onnx_file import open_session

        self.session = open_session(graph, threads)
        self.root, self.size = root, size

    def __call__(self, batch: dict) -> dict:
        batch = decode_batch(batch, self.root, self.size)
        ok = batch["error"] == ""
        vectors = np.zeros((len(ok), 0), np.float32)
        if ok.any():
            feats = self.session.run(["features"], {"image": batch["inputs"]})[0]
            vectors = np.zeros((len(ok), feats.shape[1]), np.float32)
            vectors[ok] = feats
        return {"path": batch["path"], "error": batch["error"], "vector": vectors}


def embed_on_ray(root: str | os.PathLike, paths: list[str], backbone: str = EMBEDDING_BACKBONE,
                 precision: str = "fp32", address: str | None = None, batch_size: int = BATCH_PHOTOS,
                 actors: int | None = None, progress: bool = True) -> Embeddings:
    """``embed``'s result for ``paths``, the photos the cache lacks computed on Ray (``address``: a cluster,
    as infer-all joins one; None starts a local Ray)."""
    from tqdm.auto import tqdm

    from roomclf.infer.ray_engine import connect_ray
    from roomclf.models.backbones import get_spec

    todo = pending(root, paths, backbone, precision)
    computed = 0
    if todo:
        import ray

        graph = embedder_file(backbone, precision, root, calibration=todo).read_bytes()
        started = connect_ray(address)
        try:
            size = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
            items = [{"path": p, "batch": p.split("/", 1)[0], "listing": p.rsplit("/", 1)[0]} for p in todo]
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // batch_size, 32 * size)))
            # fractional CPUs, as infer-all's actors: the driver and Ray's own processes share the cores
            ds = ds.map_batches(GraphActor, fn_constructor_kwargs={"graph": graph, "root": str(root),
                                                                   "size": get_spec(backbone).weights_size},
                                batch_size=batch_size, batch_format="numpy", num_cpus=0.5,
                                compute=ray.data.ActorPoolStrategy(size=size))
            with tqdm(total=len(todo), desc=f"embedding on Ray ({backbone}, {precision})", unit="photo",
                      disable=not progress, dynamic_ncols=True) as bar:
                for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    store(root, backbone, precision,
                          [(p, None if err else v, err or None)
                           for p, err, v in zip(out["path"], out["error"], out["vector"])])
                    computed += len(out["path"])
                    bar.update(len(out["path"]))
        finally:
            if started:
                ray.shutdown()
    result = embed(root, paths, backbone, precision=precision, progress=False)     # every vector is cached now
    result.computed = computed
    return result
