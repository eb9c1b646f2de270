"""`roomclf train` and `roomclf distill`: fast.ai transfer learning, tracked in MLflow, registered, gated."""
import click

from roomclf.commands.options import data_option
from roomclf.models.registry import DEFAULT_ONNX_URI
from roomclf.train.config import TrainConfig, parse_recipe


class WholeNumber(click.ParamType):
    """An int that also accepts '3.0' (MLflow Projects pass numeric parameters as floats)."""
    name = "integer"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if number != int(number):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return int(number)


INT = WholeNumber()

# The options `train` and `distill` share, in the order --help shows them.
SHARED_OPTIONS = [
    data_option,
    click.option("--train-batches", default="batch_01-batch_10", show_default=True,
                 help="Batches to train on, e.g. batch_01,batch_02 or batch_01-batch_10."),
    click.option("--valid-batches", default="batch_11", show_default=True,
                 help="Batches to validate on: different from the training batches."),
    click.option("--valid-sources", default=",".join(TrainConfig.valid_sources), show_default=True,
                 help="Label sources that count for validation: labels a person gave. Propagated labels are the "
                      "easy photos and would read high."),
    click.option("--image-size", type=INT, default=TrainConfig.image_size,
                 help="Input size in pixels  [default: the backbone registry's: the size its ImageNet weights were "
                      "trained at, or the one that won on the tuning split (efficientnet_lite2: docs/benchmarks.md, "
                      "train runs `lite2-300` against `lite2`)]."),
    click.option("--frozen-epochs", type=INT, default=TrainConfig.frozen_epochs, show_default=True,
                 help="Epochs with the body frozen."),
    click.option("--epochs", type=INT, default=TrainConfig.epochs, show_default=True,
                 help="Epochs of fine-tuning everything. The default won on the tuning split with all labels "
                      "(train runs `lite2` against `lite2-ep5`); with about 1,000 labels more epochs did "
                      "better (runs `labels1k-lite2-seed43-ep6`): docs/benchmarks.md, train."),
    click.option("--batch-size", type=INT, default=TrainConfig.batch_size, show_default=True),
    click.option("--lr", type=float, default=TrainConfig.lr, show_default=True,
                 help="Learning rate (the training bench's); 0 runs lr_find instead."),
    click.option("--seed", type=INT, default=TrainConfig.seed, show_default=True),
    click.option("--workers", type=INT, default=TrainConfig.workers, show_default=True,
                 help="DataLoader worker processes."),
    click.option("--quantize", type=bool, is_flag=False, flag_value=True, default=TrainConfig.quantize,
                 help="Also register a static-int8 ONNX (roomclf-onnx-int8); `--quantize` or `--quantize true`."),
    click.option("--gate-tolerance", type=click.FloatRange(0, 1, max_open=True), default=TrainConfig.gate_tolerance,
                 show_default=True,
                 help="The gate lets a clearly faster model replace the champion when it is at most this much less "
                      "accurate (a fraction of the validation photos: 0.003 = 0.3 points); 0: accuracy alone."),
    click.option("--recipe", default="defaults", show_default=True,
                 help="Recipe knobs to change, e.g. label_smoothing=0.1,mixup=0.4 (all knobs: roomclf/train/config.py "
                      "Recipe; the whole recipe is logged as recipe.* params)."),
    click.option("--run-name", default=TrainConfig.run_name, help="MLflow run name."),
]


def shared_options(f):
    for option in reversed(SHARED_OPTIONS):
        f = option(f)
    return f


def _config(data, backbone, valid_sources, lr, recipe, **kw) -> TrainConfig:
    """The one TrainConfig both commands build from their options."""
    return TrainConfig(data=data, backbone=backbone, lr=lr or None, recipe=parse_recipe(recipe),
                       valid_sources=tuple(s.strip() for s in valid_sources.split(",") if s.strip()), **kw)


@click.command()
@shared_options
@click.option("--sources", default=",".join(TrainConfig.sources), show_default=True,
              help="Label sources that count (comma list of manual, imported, propagated, predicted). "
                   "`predicted` (self-training: what `roomclf prelabel` suggested with a trained model) counts "
                   "only at the confidence where that model was precise enough on its validation photos "
                   "(recipe sure_precision).")
@click.option("--backbone", default=TrainConfig.backbone, show_default=True,
              help="The pretrained network to fine-tune, from the backbone registry (efficientnet_lite0/1/2, "
                   "resnet50, densenet121). The default scored best on the tuning split; efficientnet_lite0 is the "
                   "fastest (docs/benchmarks.md: train runs and the ensemble cost table). Two or more, "
                   "comma-separated: train each, then register their averaged ensemble too (`roomclf combine`) "
                   "and gate it.")
def train(sources, backbone, **options):
    """Train the room classifier from the label store and register it.

    Body frozen first, then fine-tuning with discriminative learning rates; the
    run is logged to MLflow (experiment roomclf-train), registered as `roomclf`
    (pyfunc + fast.ai learner) and `roomclf-onnx`, and the new version becomes
    `champion` only if it beats the current one on the same validation photos
    (or is clearly faster within --gate-tolerance).
    """
    from roomclf.train.ensemble import run_ensemble_training
    from roomclf.train.run import run_training

    backbones = [b.strip() for b in backbone.split(",") if b.strip()] or [TrainConfig.backbone]
    cfg = _config(backbone=backbones[0], sources=tuple(s.strip() for s in sources.split(",") if s.strip()), **options)
    if len(backbones) == 1:
        result = run_training(cfg, echo=click.echo)
        click.echo(f"run {result.run_id}: {result.alias}")
        return
    ens = run_ensemble_training(cfg, backbones, echo=click.echo)
    for member in ens.members:
        click.echo(f"run {member.run_id}: {member.alias} (" + ", ".join(f"{n} v{v}" for n, v in member.versions.items())
                   + ")")
    click.echo(f"ensemble {', '.join(f'{n} v{v}' for n, v in ens.versions.items())}: {ens.alias} "
               f"(accuracy {ens.accuracy:.4f} on the validation photos)")


@click.command()
@shared_options
@click.option("--teacher", default=DEFAULT_ONNX_URI, show_default=True,
              help="The model whose predictions the student learns: models:/NAME@ALIAS, models:/NAME/VERSION, or "
                   "an .onnx file or folder.")
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              help="The student's network, from the backbone registry: the cheapest by default (docs/benchmarks.md, "
                   "the ensemble cost table).")
def distill(teacher, backbone, **options):
    """Train a cheaper student on the champion's predictions, then register and gate it.

    The teacher predicts every photo of the training batches, labelled or not; the
    student (fast.ai, frozen then unfrozen, as `roomclf train`) learns its room
    probabilities at the recipe's temperature, and its attribute head learns the
    teacher's attribute scores. With --recipe live_teacher=true the teacher also
    predicts every training batch as the student sees it (augmented; with mixup,
    mixed). It is validated on human labels only, registered
    as a new version of `roomclf` and `roomclf-onnx` tagged with its teacher, and
    becomes `champion` when it beats the champion or is clearly faster within
    --gate-tolerance of its accuracy.
    """
    from roomclf.train.run import run_training

    cfg = _config(backbone=backbone, teacher=teacher, **options)
    result = run_training(cfg, echo=click.echo)
    click.echo(f"run {result.run_id}: {result.alias}")
