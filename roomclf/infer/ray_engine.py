"""The Ray side of infer-all: connecting to a cluster and the Ray Data pipeline.

An actor pool with one single-threaded onnxruntime session per actor: each actor
reads and decodes its batch (the shared photo loader, ``decode_batch``) and runs it,
as the loop engine's threads do, so no pixels travel between processes and each
actor keeps one core busy (bench/bench_crawl.py: infer-all, ray, vs its floor).
The model travels to the actors as bytes through Ray's object store, so workers
on other machines need neither the registry nor the driver's disk; the code
travels through ``runtime_env``. The corpus root must be storage every node
sees: a shared folder, or an ``s3://`` URI whose photos each worker reads itself
(so every node needs the S3 endpoint and credentials in its own environment, or
an instance role: they are never shipped). The output is written by the driver.
"""
from __future__ import annotations

import os
from pathlib import Path

from roomclf import settings
from roomclf.infer.batch import (
    InferError,
    decode_batch,
    load_model_bytes,
    predict_batch,
)
from roomclf.parallel import INFER_BATCH_PHOTOS
from roomclf.storage import StorageError


class Predictor:
    """The Ray actor: one onnxruntime session, loaded from the model's bytes (Ray ships them
    through its object store, so a worker on another machine needs neither the registry nor our disk);
    each call reads, decodes and predicts one batch of photos under ``root``."""

    def __init__(self, model_blob: bytes, model_name: str, model_version: str, with_embedding: bool, root: str,
                 threads: int = 1):
        import ray

        self.model = load_model_bytes(model_blob, threads=threads)
        self.root = root
        self.args = (model_name, model_version, with_embedding)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict):
        decoded = decode_batch(batch, self.root, self.model.input_size)
        return predict_batch(self.model, decoded, *self.args, node=self.node)


def _quiet_ray() -> None:
    """Ray's info and warning lines would bury the progress bar; errors still show, but for Ray Data's: a
    pipeline that fails raises its error to infer-all, which reports it (its stack trace in Ray Data's log)."""
    import logging

    for name in ("ray", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def _use_token_if_present() -> None:
    """Ray 2.60 clusters started with `ray start` require the auth token, but a driver connecting to
    one does not send it unless RAY_AUTH_MODE=token: set that when a token is at hand."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray reads its config once per process: refresh it, as Ray itself does when it enables tokens
            from ray._raylet import Config

            Config.initialize("")
        except (ImportError, AttributeError):
            pass


def ray_runtime_env() -> dict:
    """Ships the roomclf package to the cluster's workers."""
    import roomclf

    return {"py_modules": [str(Path(roomclf.__file__).parent)], "excludes": ["__pycache__", "*.pyc"]}


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``--address``, else $RAY_ADDRESS, else None (start a local Ray).
    Ray Client addresses (``ray://``) are refused in one line: Ray Data's streaming pipeline
    runs its driver on a cluster node, so infer-all is started on one."""
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip() or None
    if address and address.startswith("ray://"):
        raise InferError(f"{address}: Ray Client (ray://) addresses are not supported by infer-all; run it on "
                         "a node of the cluster with --address auto (or HOST:PORT of the head's GCS, port 6379)")
    return address


def connect_ray(address: str | None, cpus: int | None = None, object_store_mb: int = 512) -> bool:
    """Join a cluster (``auto``, ``HOST:PORT``, or $RAY_ADDRESS when no address is given), or
    start a small local Ray. Returns True if Ray was started here (and should be shut down)."""
    import ray
    import ray.data

    _quiet_ray()
    address = cluster_address(address)
    if ray.is_initialized():
        return False
    try:
        if address:
            _use_token_if_present()
            ray.init(address=address, runtime_env=ray_runtime_env(), log_to_driver=False,
                     logging_level="ERROR")
        else:
            ray.init(num_cpus=cpus or settings.cpus(), object_store_memory=object_store_mb * 1024 * 1024,
                     include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InferError(f"cannot connect to Ray at {address or 'a new local instance'}: "
                         f"{str(exc).splitlines()[0][:300]}") from None
    return not address


def run_ray(root: Path, items: list[dict], model_ref, with_embedding: bool,
            batch_size: int = INFER_BATCH_PHOTOS, actors: int | None = None, actor_resource: str | None = None):
    """The Ray Data engine: batches of photo paths -> actor pool (read, decode, predict) -> rows streamed
    back to the driver.
    ``model_ref``: infer-all's resolved model (``.path``, ``.name``, ``.version``).

    ``actor_resource``: a custom Ray resource (``ray start --resources '{"NAME": N}'``) the
    model actors need, so they run only on the nodes that have it."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.raise_original_map_exception = True      # a StorageError on a worker keeps its type (storage_cause)
    _quiet_ray()
    resources = ray.cluster_resources()
    if actor_resource and resources.get(actor_resource, 0) <= 0:
        raise InferError(f"no node of the cluster has the resource {actor_resource!r} "
                         f"(it has {', '.join(sorted(k for k in resources if '.' not in k and ':' not in k))})")
    cpus = int(resources.get("CPU", 1))
    size = actors or max(1, cpus)
    blob = model_ref.path.read_bytes()
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // batch_size, 4 * size * 8)))
    # half a CPU each: one actor per core still starts where something else holds part of a core (each
    # runs one thread, so they never take more than their core's worth)
    ds = ds.map_batches(Predictor, fn_constructor_kwargs={"model_blob": blob, "model_name": model_ref.name,
                                                          "model_version": model_ref.version,
                                                          "with_embedding": with_embedding, "root": str(root)},
                        batch_size=batch_size, batch_format="numpy", num_cpus=0.5,
                        resources={actor_resource: 0.01} if actor_resource else None,
                        compute=ray.data.ActorPoolStrategy(size=size))
    try:
        for frame in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=2):
            yield frame
    except Exception as exc:
        cause = storage_cause(exc)
        if cause is None:
            raise
        raise cause from None


def storage_cause(exc: BaseException) -> StorageError | None:
    """The ``StorageError`` a model actor raised on a worker while reading photos (credentials, a bucket: the
    worker's own environment), unwrapped from Ray's errors as one line that says where it happened; None if
    there is none."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)          # RayTaskError: the exception the task raised
        if isinstance(cause, StorageError):
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]   # Ray appends retry notes
            return type(cause)(f"{first} (on a Ray worker: every node needs these variables in its own environment)")
        todo += [cause if isinstance(cause, BaseException) else None, e.__cause__, e.__context__]
    return None
