"""`roomclf prelabel`: store a suggested class for every photo of a batch."""
import click

from roomclf.commands.options import backbone_option, batches_option, data_option
from roomclf.models.registry import DEFAULT_ONNX_URI


def prelabel_options(f):
    """Options shared by `prelabel` and `label` (which prelabels first when asked)."""
    for option in reversed([
        data_option,
        backbone_option,
        click.option("--model", "mode", type=click.Choice(["auto", "champion", "zeroshot"]), default="auto",
                     show_default=True, help="auto: the registered champion if there is one, else zero-shot "
                                             "from ImageNet concepts (the cold start)."),
        click.option("--model-uri", default=DEFAULT_ONNX_URI, show_default=True,
                     help="MLflow model URI or local .onnx file/folder used for champion predictions."),
        click.option("--ground-truth", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A path,label CSV (e.g. ../shared/data/labels.csv): report the accuracy."),
        click.option("--limit", type=int, default=None, help="Only the first N photos (a quick look)."),
    ]):
        f = option(f)
    return f


def run_prelabel(data, batches, backbone, mode, model_uri, ground_truth, limit) -> None:
    from roomclf.labels.prelabel import log_to_mlflow
    from roomclf.labels.prelabel import prelabel as run
    from roomclf.labels.store import LabelStore

    store = LabelStore()
    report = run(store, data, batches, mode=mode, uri=model_uri, backbone=backbone,
                 ground_truth=ground_truth, limit=limit)
    from roomclf.models.onnx_file import execution_providers

    click.echo(report.summary() + f" (onnxruntime: {execution_providers()[0]})")
    click.echo("suggested: " + ", ".join(f"{c} {n}" for c, n in report.per_class.items()))
    for path, reason in sorted(report.errors.items()):
        click.echo(f"  unreadable: {path}: {reason}")
    click.echo(f"label store: {store.path}")
    if log_to_mlflow(report):
        click.echo("recorded on the MLflow run")


@click.command()
@batches_option(default="batch_01")
@prelabel_options
def prelabel(batches, data, backbone, mode, model_uri, ground_truth, limit):
    """Suggest a class (with confidence and top-3) for every photo of the batches.

    The suggestions are stored as `predicted` labels in the label store (they never
    replace manual or imported labels) and order the labelling queue of `roomclf label`.
    With no registered champion model yet, a zero-shot mapping of ImageNet concepts to
    rooms gives the suggestions.
    """
    run_prelabel(data, batches, backbone, mode, model_uri, ground_truth, limit)
