"""roomclf: sort real-estate listing photos into rooms and tag what is in them.

\b
Start here:
  roomclf demo         the whole workflow below, end to end, on a sample corpus
  roomclf sample-data  fetch that sample (verified) on a machine without a corpus

\b
The workflow:
  roomclf prelabel     suggest a class for every photo of a batch
  roomclf label        label photos fast in a browser
  roomclf propagate    lend labels to similar unlabelled photos (annoy)
  roomclf train        fast.ai transfer learning, tracked and registered in MLflow
  roomclf distill      a faster student trained on the champion's predictions
  roomclf infer-all    run the registered ONNX model over every batch with Ray
  roomclf serve        classify single photos over HTTP
  roomclf predict      classify a few photos here (try a registered model)

\b
Comparing models:
  roomclf models       registered versions, their metrics, aliases and attribute tags
  roomclf promote      move the champion alias (every form of one training run)
  roomclf combine      average several models into one ONNX model (an ensemble)
  roomclf ui           the MLflow UI on roomclf's store (or the server's links)

Working data (label store, embeddings, MLflow store) lives in $ROOMCLF_HOME
(default: var/ in the project); the corpus in $ROOMCLF_DATA.
"""
from __future__ import annotations

import importlib

import click

from roomclf.errors import RoomclfError

# command name -> "module:function". Each module is a thin shell over the package.
COMMANDS = {
    "embed": "roomclf.commands.data:embed",
    "import-labels": "roomclf.commands.data:import_labels",
    "export-labels": "roomclf.commands.data:export_labels",
    "stats": "roomclf.commands.data:stats",
    "prelabel": "roomclf.commands.prelabel:prelabel",
    "label": "roomclf.commands.label:label",
    "propagate": "roomclf.commands.propagate:propagate",
    "train": "roomclf.commands.train:train",
    "distill": "roomclf.commands.train:distill",
    "models": "roomclf.commands.models:models",
    "promote": "roomclf.commands.models:promote",
    "ui": "roomclf.commands.models:ui",
    "combine": "roomclf.commands.models:combine",
    "infer-all": "roomclf.commands.infer:infer_all",
    "predict": "roomclf.commands.predict:predict",
    "serve": "roomclf.commands.serve:serve",
    "sample-data": "roomclf.commands.data:sample_data",
    "demo": "roomclf.commands.demo:demo",
}


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it is used (fastai and torch are slow to import)."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        ref = COMMANDS.get(name)
        return _resolve(ref) if ref else None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (RoomclfError, FileNotFoundError) as exc:   # bad input: one line, never a traceback
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            from roomclf.models.registry import is_unreachable, unreachable

            if is_unreachable(exc):
                raise click.ClickException(str(unreachable(exc, f"roomclf {ctx.invoked_subcommand}"))) from None
            raise


@click.group(cls=LazyGroup, help=__doc__, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="roomclf")
def main():
    pass


if __name__ == "__main__":
    main()
