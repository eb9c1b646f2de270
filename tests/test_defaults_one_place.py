"""Defaults live in one place: propagation's in roomclf.propagate.defaults (read by run_propagation, the
votes, `roomclf propagate` and, through mlproject.sync, MLproject), training's in TrainConfig and the
backbone registry (read by `roomclf train` and the demo)."""
import inspect
from dataclasses import MISSING, fields

from roomclf.propagate.defaults import PROPAGATION


def _cli_defaults(command) -> dict:
    return {p.name: p.default for p in command.params}


def test_roomclf_propagate_reads_the_propagation_defaults():
    from roomclf.commands.propagate import propagate

    cli = _cli_defaults(propagate)
    for f in fields(PROPAGATION):
        want = getattr(PROPAGATION, f.name)
        if f.name == "seed_sources":
            assert cli["sources"] == ",".join(want)
        else:
            assert cli[f.name] == want, f.name


def test_run_propagation_and_the_votes_read_the_propagation_defaults():
    from roomclf.propagate import votes
    from roomclf.propagate.run import run_propagation

    sig = inspect.signature(run_propagation).parameters
    for f in fields(PROPAGATION):
        if f.name != "batches":                       # required there: the CLI's default only
            assert sig[f.name].default == getattr(PROPAGATION, f.name), f.name
    names = {"k": "k", "min_share": "suspect_share", "n_trees": "n_trees", "search_k": "search_k",
             "method": "method", "folds": "folds", "target_precision": "target_precision"}
    for fn in (votes.suspect_labels, votes.cross_validated_votes, votes.cross_validate, votes.pick_thresholds,
               votes.pull_votes, votes.push_votes, votes.votes_for):
        for name, p in inspect.signature(fn).parameters.items():
            if name in names and p.default is not inspect.Parameter.empty:
                assert p.default == getattr(PROPAGATION, names[name]), (fn.__name__, name)


def test_the_demo_trains_on_train_configs_defaults_and_the_registry_size():
    from roomclf import demo
    from roomclf.models.backbones import get_spec
    from roomclf.train.config import DEFAULT_SOURCES, TrainConfig

    assert demo.IMAGE_SIZE == get_spec(demo.BACKBONE).train_size
    assert demo.LR == TrainConfig.lr and demo.FROZEN_EPOCHS == TrainConfig.frozen_epochs
    assert demo.SOURCES == DEFAULT_SOURCES == TrainConfig.sources


def test_roomclf_train_reads_train_config():
    from roomclf.commands.train import train
    from roomclf.train.config import TrainConfig

    cli = _cli_defaults(train)
    for f in fields(TrainConfig):
        if f.name in cli and f.name != "recipe" and f.default is not MISSING:
            want = getattr(TrainConfig, f.name)
            assert cli[f.name] == (",".join(want) if isinstance(want, tuple) else want), f.name


def test_the_bulk_paths_read_their_batch_size_from_one_place():
    """Photos per model call: roomclf.parallel.BATCH_PHOTOS for the paths that only run the model,
    INFER_BATCH_PHOTOS for infer-all's engines; the commands' --batch-size and every function's default
    (bench/bench_batch.py chose them)."""
    from roomclf.commands.data import embed as embed_command
    from roomclf.commands.infer import infer_all as infer_command
    from roomclf.infer.embed import embed_on_ray
    from roomclf.infer.ray_engine import run_ray
    from roomclf.infer.run import infer_all, run_loop
    from roomclf.labels.prelabel import champion
    from roomclf.models.embeddings import embed
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.parallel import BATCH_PHOTOS, INFER_BATCH_PHOTOS
    from roomclf.train.distill import teacher_outputs

    assert _cli_defaults(embed_command)["batch_size"] == BATCH_PHOTOS
    assert _cli_defaults(infer_command)["batch_size"] == INFER_BATCH_PHOTOS
    for fn in (embed_on_ray, champion, embed, OnnxModel.run_sources, OnnxModel.predict_sources, teacher_outputs):
        assert inspect.signature(fn).parameters["batch_size"].default == BATCH_PHOTOS, fn.__qualname__
    for fn in (run_ray, infer_all, run_loop):
        assert inspect.signature(fn).parameters["batch_size"].default == INFER_BATCH_PHOTOS, fn.__qualname__
