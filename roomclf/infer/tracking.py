"""infer-all as an MLflow run, in the experiment ``roomclf-infer``.

The run is open before the first batch is committed, so its id goes into every
batch's done record and the Parquet files' metadata; everything else (the model,
counts, nodes, the output folder as datasets, a per-class chart) is logged after
the batches are committed. With Ray, MLflow is imported in the background while
Ray starts, and the run opened once the engine is at work, so that MLflow's
start-up overlaps Ray's instead of coming before it; the loop engine opens it
before its threads start (``roomclf.infer.run._predict``). A run that fails with
an error before it was opened is opened then, to be recorded as failed.
Tracking never costs inference output: a store that cannot be reached, or fails
midway, is one warning line and the committed batches stay as they are.

Nothing here imports ``roomclf.infer.run``: ``log`` reads the run's summary and
model by their attributes.
"""
from __future__ import annotations

import hashlib
import json
import sys
from contextlib import contextmanager
from pathlib import Path

EXPERIMENT = "roomclf-infer"
RESUMED_TAG = "roomclf.resumed"                 # "true" when finished batches were skipped
SKIPPED_TAG = "roomclf.batches_skipped"         # their names
RUN_META = "roomclf.run_id"                     # Parquet file metadata keys of the written rows
MAX_PARAM = 500


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text[:300]}"


def _clip(text: str, limit: int = MAX_PARAM) -> str:
    return text if len(text) <= limit else text[:limit - 12] + f"... (+{len(text) - limit + 12})"


def parquet_metadata(run_id: str | None, model) -> dict[str, str]:
    """File metadata of a batch's Parquet files: the run and model that wrote its rows."""
    meta = {RUN_META: run_id, "roomclf.model_uri": model.uri, "roomclf.model_name": model.name,
            "roomclf.model_version": model.version, "roomclf.model_sha256": model.sha256}
    return {k: v for k, v in meta.items() if v}


def row_origin(parquet_file: str | Path) -> dict[str, str]:
    """Which run and model wrote the rows of an infer-all Parquet file (its ``roomclf.*`` metadata)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(parquet_file).metadata or {}
    return {k.decode()[len("roomclf."):]: v.decode() for k, v in meta.items() if k.startswith(b"roomclf.")}


class InferRun:
    """The MLflow run of one infer-all (``run_id``: None until opened, when tracking is off, or when it
    failed to start)."""

    def __init__(self, run_name: str, warn, enabled: bool = True):
        self.run_name = run_name
        self.warn = warn
        self.enabled = enabled
        self.run_id: str | None = None
        self._cm = None
        self._tried = False
        self._prepared = False

    def prepare(self) -> None:
        """Start importing MLflow in the background (once), for an ``open()`` that comes later."""
        if self.enabled and not self._prepared:
            from roomclf.settings import import_mlflow_in_background

            import_mlflow_in_background()
            self._prepared = True

    def open(self) -> str | None:
        """Open the run, the first time only (a store that fails is a warning, and tracking stays off);
        returns its id. From the thread that ends it: MLflow keeps the active run per thread."""
        if self._tried or not self.enabled:
            return self.run_id
        self._tried = True
        from roomclf.tracking.experiments import step_run

        cm = step_run(EXPERIMENT, self.run_name)
        try:
            self.run_id = cm.__enter__().info.run_id
            self._cm = cm
        except Exception as exc:
            self.warn(f"MLflow tracking is off for this run ({_one_line(exc)}); outputs are written as usual")
        return self.run_id

    def close(self, exc_info=None) -> None:
        """End the run (FAILED when ``exc_info`` is an error); a store that fails here is a warning."""
        if self._cm is None:
            return
        cm, self._cm = self._cm, None
        try:
            cm.__exit__(*(exc_info or (None, None, None)))
        except Exception as exc:
            if exc_info and exc is exc_info[1]:
                return
            self.warn(f"could not end MLflow run {self.run_id} ({_one_line(exc)}); outputs are committed")
            import mlflow

            while mlflow.active_run() is not None:      # forget it here, as step_run does for a lost store
                mlflow.tracking.fluent._active_run_stack.get().pop()

    def log(self, summary, model, options: dict, skipped_records: list[dict], failed: str | None = None) -> None:
        """Log the run's model, counts, nodes, output datasets and per-class chart (opening the run if the
        engine never started); never raises."""
        if self.open() is None:
            return
        try:
            _log(self.run_id, summary, model, options, skipped_records, failed)
        except Exception as exc:
            self.warn(f"MLflow logging of run {self.run_id} failed ({_one_line(exc)}); "
                      f"the outputs in {summary.out} are committed")


@contextmanager
def infer_run(run_name: str, warn, enabled: bool = True):
    """``with infer_run(name, warn) as run:`` the run, opened by ``run.open()`` (or ``run.log``), ended as the
    block ends."""
    run = InferRun(run_name, warn, enabled)
    try:
        yield run
    except BaseException:
        run.close(sys.exc_info())
        raise
    run.close()


def run_name(batches: list[str]) -> str:
    if not batches:
        return "infer-all (no batches)"
    return f"infer-all {batches[0]}" + (f"..{batches[-1]} ({len(batches)} batches)" if len(batches) > 1 else "")


def nodes_used(summary) -> str:
    """``loop``, or the Ray nodes that ran the model (host and node id prefix)."""
    if summary.engine != "ray":
        return "loop"
    hosts = getattr(summary, "node_hosts", {}) or {}
    return ",".join(sorted(f"{hosts.get(n, '?')}:{n[:8]}" for n in summary.nodes)) or "none"


def _folder_digest(records: list[dict]) -> str:
    """What the output folder holds for these batches: changes when any of them is rewritten."""
    keys = sorted((r.get("batch", ""), r.get("photo_digest", ""), r.get("model_key", ""), r.get("finished_at", ""))
                  for r in records if r)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def _mlflow_schema(arrow_schema):
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    def dtype(t):
        import pyarrow as pa

        if pa.types.is_list(t):
            return Array(dtype(t.value_type))
        if pa.types.is_floating(t):
            return DataType.double if t.bit_width == 64 else DataType.float
        if pa.types.is_integer(t):
            return DataType.long
        if pa.types.is_boolean(t):
            return DataType.boolean
        return DataType.string

    return Schema([ColSpec(dtype(f.type), f.name, required=not f.nullable) for f in arrow_schema])


def _output_datasets(out: Path | str, records: list[dict], with_embedding: bool):
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from roomclf import storage
    from roomclf.infer.batch import row_schema
    from roomclf.infer.listings import listing_schema
    from roomclf.infer.output import LISTINGS, PHOTOS

    digest = _folder_digest(records)
    for kind, schema in ((PHOTOS, row_schema(with_embedding)), (LISTINGS, listing_schema())):
        source = resolve_dataset_source(storage.as_uri(storage.join(out, kind)))   # file:// or s3://
        yield kind, MetaDataset(source, name=f"roomclf-infer-{kind}", digest=digest, schema=_mlflow_schema(schema))


def per_class_figure(this_run: dict[str, int], earlier: dict[str, int]):
    """A bar chart of predictions per class: this run's, stacked on those of batches finished earlier."""
    from matplotlib.figure import Figure

    from roomclf.taxonomy import CLASSES

    classes = list(CLASSES) + sorted((set(this_run) | set(earlier)) - set(CLASSES))
    now = [this_run.get(c, 0) for c in classes]
    before = [earlier.get(c, 0) for c in classes]
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(classes, now, color="#3b75af", label="predicted in this run")
    if any(before):
        ax.barh(classes, before, left=now, color="#b8c9dc", label="finished earlier (skipped)")
    for y, (a, b) in enumerate(zip(now, before)):
        ax.text(a + b, y, f" {a + b}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("photos")
    ax.set_title("infer-all: predictions per class")
    ax.legend(loc="best", fontsize=8)
    ax.margins(x=0.12)
    return fig


def _log(run_id: str, summary, model, options: dict, skipped_records: list[dict], failed: str | None) -> None:
    import time
    import warnings

    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient()
    now = int(time.time() * 1000)
    records = list(summary.records) + [r for r in skipped_records if r]
    params = {"model_uri": model.uri, "model_name": model.name, "model_sha256": model.sha256,
              "engine": summary.engine, "nodes": _clip(nodes_used(summary)), "out": str(summary.out),
              **{k: _clip(str(v)) for k, v in options.items()}}
    if model.ref.version:
        params["model_version"] = model.ref.version
    if model.ref.run_id:
        params["model_run_id"] = model.ref.run_id
    given = client.get_run(run_id).data.params       # under `mlflow run`, its entry point's parameters
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items() if k not in given])

    metrics = {"batches": len(summary.batches_done), "batches_skipped": len(summary.batches_skipped),
               "photos": summary.photos, "predictions": summary.predictions, "errors": summary.errors,
               "files_skipped": summary.skipped, "seconds": round(summary.seconds, 3),
               "photos_per_s": round(summary.photos_per_s, 3),
               **{f"class_{c}": n for c, n in summary.per_class.items()}}
    if summary.engine == "ray":
        metrics["ray_nodes"] = len(summary.nodes)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    tags = {RESUMED_TAG: str(bool(summary.batches_skipped)).lower(),
            "roomclf.model": f"{model.name} {model.version}"}
    if summary.batches_skipped:
        tags[SKIPPED_TAG] = _clip(",".join(summary.batches_skipped), 5000)
        tags["mlflow.note.content"] = (
            f"{len(summary.batches_skipped)} batches were already finished with this model and were skipped "
            f"(their rows name the runs that wrote them); {len(summary.batches_done)} batches predicted here.")
    if failed:
        tags["roomclf.error"] = _clip(failed, 2000)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        for kind, dataset in _output_datasets(summary.out, records, bool(options.get("with_embedding"))):
            mlflow.log_input(dataset, context="output", tags={"roomclf.output": kind})

    earlier: dict[str, int] = {}
    for r in skipped_records:
        for c, n in (r or {}).get("per_class", {}).items():
            earlier[c] = earlier.get(c, 0) + int(n)
    client.log_figure(run_id, per_class_figure(dict(summary.per_class), earlier), "per_class.png")
    client.log_dict(run_id, {"predicted": summary.records, "skipped": skipped_records}, "batches.json")
    if summary.engine == "ray" and summary.nodes:
        hosts = getattr(summary, "node_hosts", {}) or {}
        client.log_dict(run_id, {n: {"host": hosts.get(n), "photos": k} for n, k in sorted(summary.nodes.items())},
                        "nodes.json")
