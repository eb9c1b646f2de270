"""`roomclf infer-all`: predict every photo of the corpus with the registered ONNX model."""
import click

from roomclf.commands.options import batch_size_option, batches_option, data_option
from roomclf.models.registry import DEFAULT_ONNX_URI
from roomclf.parallel import INFER_BATCH_PHOTOS


@click.command("infer-all")
@data_option
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder or s3://BUCKET/PREFIX: photos/<batch>.parquet, listings/<batch>.parquet, "
                   "_done/<batch>.json (written last).")
@click.option("--model", default=DEFAULT_ONNX_URI, show_default=True,
              help="models:/NAME@ALIAS, models:/NAME/VERSION, or a .onnx file or folder.")
@click.option("--quantized", is_flag=True, help="Use the int8 model (models:/roomclf-onnx-int8@...) instead.")
@batches_option(default="all")
@click.option("--engine", type=click.Choice(["ray", "loop"]), default="ray", show_default=True,
              help="ray: Ray Data pipeline (local or a cluster); loop: plain single process, no Ray. On one "
                   "machine the loop comes closer to what the cores can do, as it skips Ray's start-up and daemons "
                   "(bench/bench_crawl.py, docs/benchmarks.md: a crawl-size batch, vs all cores at once).")
@click.option("--address", default=None,
              help="Ray cluster to join from one of its nodes: auto (the running cluster) or HOST:PORT of the head. "
                   "Default: $RAY_ADDRESS if set, else start a local Ray. Ray Client (ray://) addresses are not "
                   "supported. Data root and --out must be storage every node sees (a shared folder or s3://).")
@click.option("--force", is_flag=True, help="Redo batches already finished with this model.")
@click.option("--with-embedding", is_flag=True, help="Also store each photo's L2-normalised embedding.")
@batch_size_option(INFER_BATCH_PHOTOS)
@click.option("--actors", type=click.IntRange(min=1), default=None, help="Model actors in the Ray pool [default: cluster CPUs].")
@click.option("--actor-resource", default=None, metavar="NAME",
              help="Run the model actors only on nodes with this custom Ray resource "
                   "(started with `ray start --resources '{\"NAME\": N}'`).")
@click.option("--stall-timeout", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Stop (keeping finished batches) when no prediction arrives for this many seconds.")
@click.option("--cpus", type=click.IntRange(min=1), default=None,
              help="CPUs of a local Ray (default: all); with --engine loop, batches run at once (one per core).")
@click.option("--object-store-mb", default=512, show_default=True, type=click.IntRange(min=100),
              help="Object store size of a local Ray.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def infer_all(data, out, model, quantized, batches, engine, address, force, with_embedding, batch_size, actors,
              actor_resource, stall_timeout, cpus, object_store_mb, no_progress):
    """Run the registered ONNX room model over every photo of the batches.

    Writes one Parquet row per photo (class, probabilities, tags, error) and
    one per listing (photos per class, tags, cover photo), committed per batch
    atomically. A rerun skips batches already done with the same model; a bad
    photo becomes a row with an error, never a stopped run.

    --data and --out may be s3://BUCKET/PREFIX URIs (the endpoint and
    credentials from the standard AWS_* variables): a batch counts as done
    once its _done record, written last, exists.

    Each run is an MLflow run in the experiment roomclf-infer (model, counts,
    nodes, the output folder, a per-class chart); its id is in every batch's
    _done record and in the Parquet files' metadata. A tracking store that
    fails is a warning: the outputs are written all the same.

    \b
    Examples:
      roomclf infer-all --out var/infer
      roomclf infer-all --out var/infer --batches batch_19 --engine loop
      roomclf infer-all --out /shared/infer --address auto --quantized
      roomclf infer-all --data s3://crawl/listings --out s3://crawl/infer
    """
    from roomclf.infer.run import infer_all as run
    from roomclf.models.onnx_file import execution_providers

    click.echo(f"onnxruntime on this host: {execution_providers()[0]}", err=True)
    s = run(data, out, batches=batches, model=model, quantized=quantized, engine=engine, address=address,
            force=force, with_embedding=with_embedding, batch_size=batch_size, actors=actors, cpus=cpus,
            progress=not no_progress, object_store_mb=object_store_mb, actor_resource=actor_resource,
            stall_timeout_s=stall_timeout, warn=lambda m: click.echo(f"warning: {m}", err=True))
    click.echo(format_summary(s))


def format_summary(s) -> str:
    lines = [f"model {s.model}, engine {s.engine}"]
    if s.batches_skipped:
        lines.append(f"already done with this model (skipped, --force redoes): {len(s.batches_skipped)} batches")
    if not s.batches_done:
        lines.append("nothing to do")
    else:
        lines.append(f"{len(s.batches_done)} batches: {s.photos} photos, {s.predictions} predictions, "
                     f"{s.errors} errors, {s.skipped} non-photo files skipped, "
                     f"{s.seconds:.1f}s ({s.photos_per_s:.1f} photos/s)")
        lines.append("per class: " + ", ".join(f"{c} {n}" for c, n in s.per_class.most_common()))
    lines.append(f"output: {s.out}/photos/*.parquet, {s.out}/listings/*.parquet")
    if s.run_id:
        lines.append(f"MLflow run {s.run_id} (experiment roomclf-infer)")
    return "\n".join(lines)
