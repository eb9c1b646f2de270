"""Run a registered ONNX room model over whole batches of the corpus, resumably.

Both engines run the plain functions of ``roomclf.infer.batch`` (decode, predict,
rows); ``roomclf.infer.output.commit_batch`` commits each finished batch atomically.
The corpus root and the output may each be a local folder or an ``s3://`` URI
(``roomclf.storage``); with Ray, the photos are read on the workers.
``engine="ray"`` runs them as a Ray Data pipeline (``roomclf.infer.ray_engine``);
``engine="loop"`` runs them in this process, one chunk after another.
Each run is an MLflow run in the experiment ``roomclf-infer`` (``roomclf.infer.tracking``):
its id is in every batch's done record and in the Parquet files' metadata.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from roomclf import settings
from roomclf.infer.batch import (
    InferError,
    decode_batch,
    predict_batch,
    row_columns,
    row_schema,
)
from roomclf.models.registry import (
    DEFAULT_ONNX_URI,
    INT8_NAME,
    ONNX_NAME,
    ModelNotFound,
    ModelRef,
    local_onnx,
    resolve,
)
from roomclf.parallel import INFER_BATCH_PHOTOS

ENGINES = ("ray", "loop")


# --------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class ModelFile:
    """The model infer-all runs: the registry's reference, the local file and its digest."""
    ref: ModelRef
    path: Path        # the local .onnx file
    sha256: str

    @property
    def uri(self) -> str:
        return self.ref.uri

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        """The registry version, or ``sha256:<12 hex>`` for a file."""
        return self.ref.version or f"sha256:{self.sha256[:12]}"

    @property
    def key(self) -> str:
        """What a done record must match for a batch to count as finished with this model."""
        return f"{self.name}/{self.version}/{self.sha256[:16]}"


def quantized_uri(uri: str) -> str:
    """The int8 twin of a ``roomclf-onnx`` registry URI."""
    for sep in ("@", "/"):
        prefix = f"models:/{ONNX_NAME}{sep}"
        if uri.startswith(prefix):
            return f"models:/{INT8_NAME}{sep}{uri[len(prefix):]}"
    if uri.startswith(f"models:/{INT8_NAME}"):
        return uri
    raise InferError(f"--quantized needs a models:/{ONNX_NAME}... URI (got {uri}); "
                     "pass the int8 model's URI or path with --model instead")


def resolve_model(uri: str = DEFAULT_ONNX_URI, quantized: bool = False) -> ModelFile:
    """The model to run: a ``models:/`` URI is looked up in the registry and downloaded; a path is used as is."""
    if quantized:
        uri = quantized_uri(uri)
    try:
        ref = resolve(uri)
    except ModelNotFound as exc:
        hint = f" (register an int8 model as {INT8_NAME} with alias champion, or pass --model)" if quantized else ""
        raise ModelNotFound(f"{exc}{hint}") from None
    path = local_onnx(ref)
    from roomclf.sample.download import sha256

    return ModelFile(ref, path, sha256(path))


# --------------------------------------------------------------------------- the engines

def run_loop(root: Path | str, items: list[dict], model_ref: ModelFile, with_embedding: bool,
             batch_size: int = INFER_BATCH_PHOTOS, cpus: int | None = None, model=None):
    """The in-process engine: yields a DataFrame of rows per chunk of ``batch_size`` photos, in order. Chunks
    are decoded and predicted one per core at a time (``cpus``, default ``settings.cpus()``), each in its own
    thread over one single-threaded session (``roomclf.parallel`` says why): ``model``, an ``OnnxModel`` of
    ``model_ref`` already open, or one opened here."""
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.parallel import ordered_map

    model = model or OnnxModel(model_ref.path, threads=1)
    chunks = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]

    def one(chunk: list[dict]):
        cols = {k: [it[k] for it in chunk] for k in ("path", "batch", "listing")}
        decoded = decode_batch(cols, str(root), model.input_size)
        return predict_batch(model, decoded, model_ref.name, model_ref.version, with_embedding)

    yield from ordered_map(one, chunks, cpus or settings.cpus())


class Stream:
    """The items of an engine's stream, read ahead in a thread started at once (a few items at most).
    Iterating raises ``InferError`` when nothing arrives for ``seconds``: a cluster that lost every node
    able to run the model waits forever otherwise. ``close()`` stops the thread and closes the engine's
    stream there (its threads' pending batches dropped, Ray's pipeline ended), so a run that stops early
    leaves no engine at work."""

    AHEAD = 4

    def __init__(self, stream, seconds: float):
        import queue
        import threading

        self.seconds = seconds
        self._q: queue.Queue = queue.Queue(maxsize=self.AHEAD)
        self._done = object()
        self._stop = threading.Event()
        threading.Thread(target=self._pump, args=(stream,), daemon=True, name="infer-all-stream").start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self, stream) -> None:
        try:
            for item in stream:
                if not self._put(item):
                    return
        except BaseException as exc:   # handed to the consumer
            self._put(exc)
            return
        finally:
            if self._stop.is_set() and hasattr(stream, "close"):
                stream.close()
        self._put(self._done)

    def close(self) -> None:
        self._stop.set()

    def __iter__(self):
        import queue

        while True:
            try:
                item = self._q.get(timeout=self.seconds)
            except queue.Empty:
                raise InferError(f"no prediction for {self.seconds:.0f} s: the cluster may have lost the nodes that "
                                 "run the model (check `ray status`); finished batches are kept, rerun to do the rest")
            if item is self._done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


# --------------------------------------------------------------------------- the run

@dataclass
class BatchPlan:
    name: str
    photos: list[dict] = field(default_factory=list)
    skipped: int = 0


@dataclass
class Summary:
    out: Path | str                                             # a local folder or an s3:// URI
    engine: str
    model: str
    photos: int = 0
    predictions: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    per_class: Counter = field(default_factory=Counter)
    batches_done: list[str] = field(default_factory=list)
    batches_skipped: list[str] = field(default_factory=list)   # already finished with this model
    records: list[dict] = field(default_factory=list)          # the done records committed by this run
    nodes: Counter = field(default_factory=Counter)             # node (Ray node id, or "local") -> photos
    node_hosts: dict[str, str] = field(default_factory=dict)    # Ray node id -> host name
    run_id: str | None = None                                   # the MLflow run (None: not tracked)
    warnings: list[str] = field(default_factory=list)           # tracking problems (outputs unaffected)

    @property
    def photos_per_s(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0


def plan_batches(root: str | os.PathLike, batches) -> tuple[Path | str, list[BatchPlan]]:
    from roomclf.corpus import discover

    corpus = discover(root, batches)
    plans: dict[str, BatchPlan] = {}
    for b in dict.fromkeys([p.batch for p in corpus.photos] + [s.split("/", 1)[0] for s in corpus.skipped]):
        plans[b] = BatchPlan(b)
    for p in corpus.photos:
        plans[p.batch].photos.append({"path": p.path, "batch": p.batch, "listing": p.listing})
    for s in corpus.skipped:
        plans[s.split("/", 1)[0]].skipped += 1
    return corpus.root, sorted(plans.values(), key=lambda b: b.name)


def _commit(out: Path | str, plan: BatchPlan, frames: list, model_ref: ModelFile, engine: str, with_embedding: bool,
            seconds: float, run_id: str | None = None) -> dict:
    import pandas as pd

    from roomclf.infer.listings import listing_schema, summarize
    from roomclf.infer.output import commit_batch, photo_digest, to_table
    from roomclf.infer.tracking import parquet_metadata

    photos = (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=row_columns(with_embedding)))
    photos = (photos.drop_duplicates("path", keep="last")            # a retried task may repeat rows
              .sort_values("path", kind="stable").reset_index(drop=True))
    ok = photos[photos["error"].isna()]
    record = {"batch": plan.name, "photos": len(photos), "predictions": len(ok), "errors": len(photos) - len(ok),
              "skipped": plan.skipped, "per_class": {c: int(n) for c, n in ok["label"].value_counts().items()},
              "model_uri": model_ref.uri, "model_name": model_ref.name, "model_version": model_ref.version,
              "model_sha256": model_ref.sha256, "model_key": model_ref.key, "engine": engine,
              "nodes": {str(n): int(k) for n, k in photos["node"].value_counts().items()},
              "with_embedding": with_embedding, "photo_digest": photo_digest([p["path"] for p in plan.photos]),
              "elapsed_s": round(seconds, 2), "run_id": run_id,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    meta = parquet_metadata(run_id, model_ref)       # file metadata: the columns stay as they were
    commit_batch(out, plan.name, to_table(photos, row_schema(with_embedding)).replace_schema_metadata(meta),
                 to_table(summarize(photos), listing_schema()).replace_schema_metadata(meta), record)
    return record


def infer_all(root: str | os.PathLike, out: str | os.PathLike, batches=None, model: str = DEFAULT_ONNX_URI,
              quantized: bool = False, engine: str = "ray", address: str | None = None, force: bool = False,
              with_embedding: bool = False, batch_size: int = INFER_BATCH_PHOTOS, actors: int | None = None,
              cpus: int | None = None, progress: bool = True, object_store_mb: int = 512,
              actor_resource: str | None = None, stall_timeout_s: float = 600.0, track: bool = True,
              warn=None) -> Summary:
    """Predict every photo of the batches into ``out``, skipping batches already done with this model.

    Finished batches are committed as they complete; if no prediction arrives for
    ``stall_timeout_s`` (e.g. the only nodes able to run the model are gone), the run
    stops with ``InferError`` and a rerun does what is left.

    With ``track`` the run is an MLflow run in ``roomclf-infer``, logged after the batches
    are committed; a tracking problem goes to ``warn`` (default: a line on stderr) and
    ``Summary.warnings``, never into the outputs."""
    from roomclf import storage
    from roomclf.infer.output import clean_stale, done_record, is_done
    from roomclf.infer.tracking import infer_run, run_name

    if engine not in ENGINES:
        raise InferError(f"unknown engine {engine!r} (choose {', '.join(ENGINES)})")
    out = storage.resolve(out)
    root, plans = plan_batches(root, batches)
    model_ref = resolve_model(model, quantized)
    summary = Summary(out=out, engine=engine, model=f"{model_ref.name} {model_ref.version}")
    todo = []
    for plan in plans:
        if not force and is_done(out, plan.name, model_ref.key, with_embedding, [p["path"] for p in plan.photos]):
            summary.batches_skipped.append(plan.name)
        else:
            todo.append(plan)
    storage.ensure_folder(out)        # an S3 bucket that is missing or refuses us fails here, before any work
    clean_stale(out)

    def warned(message: str) -> None:
        summary.warnings.append(message)
        (warn or (lambda m: print(f"warning: {m}", file=sys.stderr)))(message)

    options = {"data": root, "batches": ",".join(p.name for p in plans), "quantized": quantized, "force": force,
               "with_embedding": with_embedding, "batch_size": batch_size}
    with infer_run(run_name([p.name for p in plans]), warned, enabled=track) as tracked:
        try:
            if todo:
                _predict(root, out, todo, model_ref, summary, engine, address, with_embedding, batch_size, actors,
                         cpus, progress, object_store_mb, actor_resource, stall_timeout_s, tracked)
            summary.run_id = tracked.open()
        except Exception as exc:
            tracked.log(summary, model_ref, options, [done_record(out, b) for b in summary.batches_skipped],
                        failed=str(exc))
            raise
        tracked.log(summary, model_ref, options, [done_record(out, b) for b in summary.batches_skipped])
    return summary


def _predict(root: Path | str, out: Path | str, todo: list[BatchPlan], model_ref: ModelFile, summary: Summary, engine: str,
             address, with_embedding: bool, batch_size: int, actors, cpus, progress: bool, object_store_mb: int,
             actor_resource, stall_timeout_s: float, tracked) -> None:
    """Predict the photos of ``todo`` with one engine, committing each batch as its last photo arrives.
    ``tracked``: infer-all's MLflow run (``roomclf.infer.tracking.InferRun``), opened here before the first
    commit, so that its id is in every commit: with Ray, once the engine is at work, so that MLflow's start-up
    overlaps Ray's; with the loop, before its threads start, as they take every core at once and
    leave nothing to overlap with."""
    from tqdm import tqdm

    from roomclf.models.onnx_file import OnnxModel

    # A file that is no roomclf model fails here, in one line, before any engine starts; the loop engine runs
    # on this session (one thread: it runs a batch per core), Ray's actors load their own from the file's bytes.
    model = OnnxModel(model_ref.path, threads=1)
    items = [it for plan in todo for it in plan.photos]
    by_name = {p.name: p for p in todo}
    frames: dict[str, list] = {p.name: [] for p in todo}
    seen: dict[str, set] = {p.name: set() for p in todo}
    t0 = time.perf_counter()
    started_ray = False

    def finish(plan: BatchPlan):
        rec = _commit(out, plan, frames.pop(plan.name), model_ref, engine, with_embedding, time.perf_counter() - t0,
                      summary.run_id)
        summary.batches_done.append(plan.name)
        summary.records.append(rec)
        summary.photos += rec["photos"]
        summary.predictions += rec["predictions"]
        summary.errors += rec["errors"]
        summary.skipped += rec["skipped"]
        summary.per_class.update(rec["per_class"])
        summary.nodes.update(rec["nodes"])

    stream = None
    try:
        if engine == "ray":
            # Ray is imported before MLflow's import starts beside it (tracked.prepare): two threads importing
            # packages that share dependencies can hand one of them a half-made module.
            import ray.data  # noqa: F401

            from roomclf.infer.ray_engine import connect_ray, run_ray

            tracked.prepare()
            started_ray = connect_ray(address, cpus, object_store_mb)
            stream = Stream(run_ray(root, items, model_ref, with_embedding, batch_size, actors, actor_resource),
                            stall_timeout_s)
            summary.run_id = tracked.open()
        else:
            summary.run_id = tracked.open()
            t0 = time.perf_counter()
            stream = Stream(run_loop(root, items, model_ref, with_embedding, batch_size, cpus, model), stall_timeout_s)
        for plan in todo:           # batches with nothing to predict (only non-photo files)
            if not plan.photos:
                finish(plan)
        with tqdm(total=len(items), unit="photo", disable=not progress, desc="infer-all",
                  dynamic_ncols=True) as bar:
            for frame in stream:
                for name, part in frame.groupby("batch", sort=False):
                    if name not in frames:        # a retried task's rows for a batch already committed
                        continue
                    frames[name].append(part)
                    seen[name].update(part["path"])
                    if len(seen[name]) == len(by_name[name].photos):
                        finish(by_name[name])
                bar.update(len(frame))
    finally:
        if stream is not None:
            stream.close()
        summary.seconds = time.perf_counter() - t0
        if engine == "ray":
            summary.node_hosts = _ray_hosts()
        if started_ray:
            import ray

            ray.shutdown()


def _ray_hosts() -> dict[str, str]:
    """Ray node id -> host name, for the nodes of the cluster this process is connected to."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        return {n["NodeID"]: n.get("NodeManagerHostname") or n.get("NodeManagerAddress", "?") for n in ray.nodes()}
    except Exception:   # only for the record: never fail a run over it
        return {}
