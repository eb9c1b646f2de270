"""`roomclf train`: fast.ai transfer learning, tracked in MLflow, registered, gated."""
import click

from roomclf.commands.options import data_option
from roomclf.train.recipe import TrainConfig, parse_recipe


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

@click.command()
@data_option
@click.option("--train-batches", default="batch_01-batch_10", show_default=True,
              help="Batches to train on, e.g. batch_01,batch_02 or batch_01-batch_10.")
@click.option("--valid-batches", default="batch_11", show_default=True,
              help="Batches to validate on: different from the training batches.")
@click.option("--sources", default=",".join(TrainConfig.sources), show_default=True,
              help="Label sources that count (comma list of manual, imported, propagated, predicted). "
                   "`predicted` (self-training: what `roomclf prelabel` suggested with a trained model) counts "
                   "only where that model was 95% right on its validation photos (recipe sure_precision).")
@click.option("--valid-sources", default=",".join(TrainConfig.valid_sources), show_default=True,
              help="Label sources that count for validation: labels a person gave. Propagated labels are the "
                   "easy photos and would read high.")
@click.option("--backbone", default=TrainConfig.backbone, show_default=True,
              help="The pretrained network to fine-tune, from the backbone registry (efficientnet_lite0/1/2, "
                   "resnet50, densenet121). efficientnet_lite2 (at 300 px) scored 2.5 points above lite0 on the "
                   "tuning split at 2.5x its model time per photo (bench_ensemble); lite0 is the fastest. Two or more, "
                   "comma-separated: train each, then register their averaged ensemble too (`roomclf combine`) "
                   "and gate it (efficientnet_lite2,efficientnet_lite0 scored 0.1 points below lite2 alone).")
@click.option("--image-size", type=INT, default=None,
              help="Input size in pixels  [default: the backbone registry's; efficientnet_lite2: 300, which "
                   "scored 0.4 points above its weights' own 260 on the tuning split (1.0 with ~1,000 labels), "
                   "1.33x the compute per photo].")
@click.option("--frozen-epochs", type=INT, default=TrainConfig.frozen_epochs, show_default=True,
              help="Epochs with the body frozen.")
@click.option("--epochs", type=INT, default=TrainConfig.epochs, show_default=True,
              help="Epochs of fine-tuning everything. 3 is best measured with ~3,800 labels (efficientnet_lite2 "
                   "with 5: 0.3 points lower on the tuning split); "
                   "with ~1,000, 6 scored 0.3-0.5 points higher on the tuning split (docs/benchmarks.md, train).")
@click.option("--batch-size", type=INT, default=TrainConfig.batch_size, show_default=True)
@click.option("--lr", type=float, default=TrainConfig.lr, show_default=True,
              help="Learning rate (the training bench's); 0 runs lr_find instead.")
@click.option("--seed", type=INT, default=TrainConfig.seed, show_default=True)
@click.option("--workers", type=INT, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--quantize", type=bool, is_flag=False, flag_value=True, default=False,
              help="Also register a static-int8 ONNX (roomclf-onnx-int8); `--quantize` or `--quantize true`.")
@click.option("--recipe", default="defaults", show_default=True,
              help="Recipe knobs to change, e.g. label_smoothing=0.1,mixup=0.4 (all knobs: roomclf/train/recipe.py "
                   "Recipe; the whole recipe is logged as recipe.* params).")
@click.option("--run-name", default=None, help="MLflow run name.")
def train(data, train_batches, valid_batches, sources, valid_sources, backbone, image_size, frozen_epochs, epochs, batch_size,
          lr, seed, workers, quantize, recipe, run_name):
    """Train the room classifier from the label store and register it.

    Body frozen first, then fine-tuning with discriminative learning rates; the
    run is logged to MLflow (experiment roomclf-train), registered as `roomclf`
    (pyfunc + fast.ai learner) and `roomclf-onnx`, and the new version becomes
    `champion` only if it beats the current one on the same validation photos.
    """
    from roomclf.train.ensemble import run_ensemble_training
    from roomclf.train.run import run_training

    backbones = [b.strip() for b in backbone.split(",") if b.strip()] or [TrainConfig.backbone]
    cfg = TrainConfig(data=data, train_batches=train_batches, valid_batches=valid_batches,
                      sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
                      valid_sources=tuple(s.strip() for s in valid_sources.split(",") if s.strip()),
                      backbone=backbones[0], image_size=image_size, frozen_epochs=frozen_epochs,
                      epochs=epochs, batch_size=batch_size, lr=lr or None, seed=seed, workers=workers,
                      quantize=quantize, run_name=run_name, recipe=parse_recipe(recipe))
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
