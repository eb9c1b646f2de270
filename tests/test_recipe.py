"""The training recipe: every knob in one Recipe, changed by ``--recipe``, checked in one place, used by fit."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import pick_photos

from roomclf.train.config import (
    DEFAULT_RECIPE,
    Recipe,
    TrainConfig,
    TrainingError,
    check_config,
    parse_recipe,
)


def _cfg(**recipe) -> TrainConfig:
    return TrainConfig(data=".", train_batches=["batch_01"], valid_batches=["batch_02"],
                       recipe=replace(DEFAULT_RECIPE, **recipe))


def test_parse_recipe_changes_only_the_named_knobs():
    r = parse_recipe("label_smoothing=0.1, mixup=0.4,class-weighted=false,lr_find_iters=20")
    assert (r.label_smoothing, r.mixup, r.class_weighted, r.lr_find_iters) == (0.1, 0.4, False, 20)
    assert replace(r, label_smoothing=0.0, mixup=0.0, class_weighted=True, lr_find_iters=40) == DEFAULT_RECIPE
    assert parse_recipe("defaults") is DEFAULT_RECIPE and parse_recipe("") is DEFAULT_RECIPE


@pytest.mark.parametrize("text, message", [
    ("warp_speed=9", "is not KNOB=VALUE with a knob of"),
    ("mixup", "is not KNOB=VALUE"),
    ("mixup=lots", "mixup takes a float, not 'lots'"),
    ("lr_find_iters=2.5", "lr_find_iters takes a int"),
])
def test_parse_recipe_refuses_in_one_line(text, message):
    with pytest.raises(TrainingError, match=message) as err:
        parse_recipe(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("knobs", [{"label_smoothing": 1.0}, {"mixup": -0.1}, {"pct_start": 0.0},
                                   {"lr_min": 1e-2, "lr_max": 1e-3}, {"unfrozen_lr_div": 0.0},
                                   {"parity_photos": 0}, {"small_size": 16},
                                   {"small_size": 160, "small_epochs": -1}])
def test_check_config_refuses_bad_recipe_values(knobs):
    with pytest.raises(TrainingError, match="recipe:"):
        check_config(_cfg(**knobs))
    check_config(_cfg())          # the defaults pass


def test_train_command_refuses_a_bad_recipe_before_any_work(tmp_path):
    from roomclf.cli import main

    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--recipe", "mixup=lots"])
    assert res.exit_code == 1 and res.output.strip() == "Error: --recipe: mixup takes a float, not 'lots'"


def test_label_smoothing_and_mixup_reach_the_learner(corpus_root, ground_truth, home):
    """A tiny real fit: the loss is fastai's label-smoothing loss with the class weights, and MixUp
    is the loss function while training (restored afterwards)."""
    from fastai.callback.core import Callback
    from fastai.callback.mixup import MixUp
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat

    from roomclf.models.backbones import get_spec
    from roomclf.train.data import TrainData, class_weights
    from roomclf.train.learner import build_dls, fit, make_learner

    data = TrainData(train=pick_photos(ground_truth, "batch_01", 16), valid=pick_photos(ground_truth, "batch_02", 8))
    spec = get_spec("efficientnet_lite0")
    recipe = Recipe(label_smoothing=0.1, mixup=0.4)
    dls = build_dls(corpus_root, data, 64, 8, spec.mean, spec.std, recipe=recipe)
    weights = class_weights([c for _, c in data.train])
    learn = make_learner(dls, "efficientnet_lite0", weights, recipe=recipe)
    assert isinstance(learn.loss_func, LabelSmoothingCrossEntropyFlat) and learn.loss_func.func.eps == 0.1
    assert np.allclose(learn.loss_func.func.weight.numpy(), weights)

    seen = []

    class Probe(Callback):
        order = MixUp.order + 1

        def after_loss(self):
            if self.training:
                seen.append(type(getattr(self.learn.loss_func, "__self__", None)).__name__)

    with learn.no_bar(), learn.no_logging():
        fit(learn, 1, 0, 1e-3, cbs=[Probe()], recipe=recipe)
    assert seen and set(seen) == {"MixUp"}
    assert isinstance(learn.loss_func, LabelSmoothingCrossEntropyFlat)      # MixUp gave the loss back

    plain = make_learner(dls, "efficientnet_lite0", weights, recipe=DEFAULT_RECIPE)
    assert isinstance(plain.loss_func, CrossEntropyLossFlat)


def test_balanced_sampling_draws_every_class_about_equally_and_drops_the_loss_weights(corpus_root, ground_truth):
    """``balanced_sampling``: the training loader draws photos with probability 1/(class count), so a class
    with 6x the photos of another is drawn about as often; the loss is then unweighted. The default
    loader draws in the photos' own proportions."""
    from roomclf.models.backbones import get_spec
    from roomclf.train.data import TrainData, class_weights
    from roomclf.train.learner import build_dls, make_learner

    by_class: dict[str, list] = {}
    for p, r in sorted(ground_truth.items()):
        if p.startswith("batch_01/") and r["label"] in ("exterior", "kitchen", "bathroom"):
            by_class.setdefault(r["label"], []).append((p, r["label"]))
    train = by_class["exterior"][:24] + by_class["kitchen"][:4] + by_class["bathroom"][:4]
    data = TrainData(train=train, valid=pick_photos(ground_truth, "batch_02", 8))
    spec = get_spec("efficientnet_lite0")

    def exterior_share(recipe) -> float:
        dls = build_dls(corpus_root, data, 64, 8, spec.mean, spec.std, recipe=recipe)
        np.random.seed(0)
        drawn = [train[i][1] for _ in range(60) for i in dls.train.get_idxs()]
        assert len(drawn) == 60 * len(train)
        return drawn.count("exterior") / len(drawn)

    balanced = Recipe(balanced_sampling=True)
    assert 0.25 < exterior_share(balanced) < 0.42          # a third each, give or take
    assert exterior_share(DEFAULT_RECIPE) == pytest.approx(24 / 32)   # every photo once per epoch

    dls = build_dls(corpus_root, data, 64, 8, spec.mean, spec.std, recipe=balanced)
    weights = class_weights([c for _, c in train])
    assert make_learner(dls, "efficientnet_lite0", weights, recipe=balanced).loss_func.func.weight is None
    assert make_learner(dls, "efficientnet_lite0", weights).loss_func.func.weight is not None


def test_progressive_resizing_trains_the_first_epochs_on_smaller_photos(corpus_root, ground_truth):
    """``small_size``: the frozen epochs and the first ``small_epochs`` unfrozen ones see photos of that size,
    the later ones the input size; the learner ends on its own DataLoaders (what export and scoring use)."""
    from fastai.callback.core import Callback

    from roomclf.models.backbones import get_spec
    from roomclf.train.data import TrainData, class_weights
    from roomclf.train.learner import build_dls, build_small_dls, fit, make_learner

    data = TrainData(train=pick_photos(ground_truth, "batch_01", 16), valid=pick_photos(ground_truth, "batch_02", 8))
    spec = get_spec("efficientnet_lite0")
    recipe = Recipe(small_size=32, small_epochs=1)
    dls = build_dls(corpus_root, data, 64, 8, spec.mean, spec.std, recipe=recipe)
    small = build_small_dls(corpus_root, data, 8, spec.mean, spec.std, recipe=recipe)
    learn = make_learner(dls, "efficientnet_lite0", class_weights([c for _, c in data.train]), recipe=recipe)
    sizes = []

    class Probe(Callback):
        def before_batch(self):
            if self.training and self.iter == 0:
                sizes.append(tuple(self.xb[0].shape[-2:]))

    with learn.no_bar(), learn.no_logging():
        fit(learn, 1, 2, 1e-3, cbs=[Probe()], recipe=recipe, small_dls=small)
    assert sizes == [(32, 32), (32, 32), (64, 64)]          # frozen, unfrozen 1 small; unfrozen 2 full size
    assert learn.dls is dls


def test_flip_tta_is_folded_into_the_onnx_graph(corpus_root, ground_truth, tmp_path):
    """``flip_tta``: one ONNX graph averages a photo and its mirror, so a photo and its mirror image get
    the same class probabilities; the embedding is the photo's own, as without the option."""
    import torch

    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import OnnxModel, export_onnx
    from roomclf.photos import model_input

    torch.manual_seed(0)
    net = RoomNet("efficientnet_lite0", pretrained=True).eval()
    photos = [p for p, _ in pick_photos(ground_truth, "batch_03", 7)][:3]
    x = np.stack([model_input(corpus_root / p, 96) for p in photos])
    mirror = x[:, :, :, ::-1].copy()
    out = {}
    for flip in (False, True):
        path = export_onnx(ExportNet(net, flip_tta=flip).eval(), tmp_path / f"flip{flip}.onnx",
                           {"input_size": 96, "flip_tta": flip})
        model = OnnxModel(path)
        out[flip] = (model.run(x), model.run(mirror))
    plain, tta = out[False], out[True]
    assert not np.allclose(plain[0]["probs"], plain[1]["probs"], atol=1e-4)     # the plain model is not symmetric
    assert np.allclose(tta[0]["probs"], tta[1]["probs"], atol=1e-5)
    assert np.allclose(tta[0]["probs"], (plain[0]["probs"] + plain[1]["probs"]) / 2, atol=1e-5)
    assert np.allclose(tta[0]["embedding"], plain[0]["embedding"], atol=1e-5)


def test_validation_with_flip_tta_scores_what_the_flip_model_computes(corpus_root, ground_truth, tmp_path):
    """``predict(learn, flip_tta=True)`` (the validation figures and sure-confidence table of a flip_tta
    run) is the mean over photo and mirror: mirroring every validation photo leaves it unchanged,
    while the plain probabilities change."""
    from PIL import Image, ImageOps

    from roomclf.models.backbones import get_spec
    from roomclf.taxonomy import CLASSES
    from roomclf.train.data import TrainData, class_weights
    from roomclf.train.learner import build_dls, make_learner
    from roomclf.train.predict import predict

    train, valid = pick_photos(ground_truth, "batch_01", 8), pick_photos(ground_truth, "batch_02", 8)
    for name, turn in (("plain", lambda im: im), ("mirror", ImageOps.mirror)):
        for p, _ in train + valid:
            out = tmp_path / name / (p + ".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            turn(Image.open(corpus_root / p).convert("RGB").resize((64, 64))).save(out)   # square: no crop offset
    data = TrainData(train=[(p + ".png", c) for p, c in train], valid=[(p + ".png", c) for p, c in valid])
    spec = get_spec("efficientnet_lite0")
    learn = None
    got = {}
    for name in ("plain", "mirror"):
        dls = build_dls(tmp_path / name, data, 64, 4, spec.mean, spec.std)
        if learn is None:
            learn = make_learner(dls, "efficientnet_lite0", class_weights([c for _, c in data.train]))
        learn.dls = dls
        got[name] = {flip: predict(learn, flip_tta=flip) for flip in (False, True)}
    assert list(got["plain"][True][1]) == [CLASSES.index(c) for _, c in valid]
    assert not np.allclose(got["plain"][False][0], got["mirror"][False][0], atol=1e-4)
    assert np.allclose(got["plain"][True][0], got["mirror"][True][0], atol=1e-5)
    assert np.allclose(got["plain"][True][0], (got["plain"][False][0] + got["mirror"][False][0]) / 2, atol=1e-5)


def test_int8_calibration_draws_the_recipe_number_of_photos_from_every_batch():
    from roomclf.models.quantize import calibration_sample
    from roomclf.train.config import DEFAULT_RECIPE

    train = [f"batch_{b:02d}/listing_{i:04d}/photo_01.jpg" for b in (1, 2, 3) for i in range(400)]
    drawn = calibration_sample(train, DEFAULT_RECIPE.int8_calibration_photos)
    assert len(drawn) == len(set(drawn)) == DEFAULT_RECIPE.int8_calibration_photos
    assert {p.split("/")[0] for p in drawn} == {"batch_01", "batch_02", "batch_03"}
    assert calibration_sample(train[:7], 50) == train[:7]
    assert calibration_sample(train, 0) == []
