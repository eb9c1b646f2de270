"""The training recipe: every knob in one Recipe, changed by ``--recipe``, checked in one place, used by fit."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import pick_photos

from roomclf.taxonomy import CLASSES
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
                                   {"small_size": 160, "small_epochs": -1}, {"pooling": "mean"},
                                   {"attribute_loss_weight": -1.0}, {"attribute_loss_weight": 1.0, "mixup": 0.4}])
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


# ---- multi-task fine-tuning and the pooling of the last feature map ---------------------------

def test_multitask_and_pooling_knobs_parse_and_are_checked():
    r = parse_recipe("attribute_loss_weight=1,pooling=gem")
    assert (r.attribute_loss_weight, r.pooling) == (1.0, "gem")
    assert (DEFAULT_RECIPE.attribute_loss_weight, DEFAULT_RECIPE.pooling) == (0.0, "avg")     # today's behaviour
    check_config(_cfg(attribute_loss_weight=1.0, pooling="max"))
    with pytest.raises(TrainingError, match="pooling is one of avg, max, gem"):
        check_config(_cfg(pooling="mean"))
    taught = replace(_cfg(attribute_loss_weight=0.5), teacher="models:/roomclf-onnx@champion")
    with pytest.raises(TrainingError, match="not with mixup .* nor with a teacher"):
        check_config(taught)


def test_masked_attribute_loss_counts_known_cells_only():
    """Unknown cells (photos without attribute labels) change neither the loss nor any gradient; known ones do."""
    import torch

    from roomclf.taxonomy import ATTRIBUTE_KEYS
    from roomclf.train.multitask import UNKNOWN, key_weights, masked_attribute_loss

    k = len(ATTRIBUTE_KEYS)
    targets = torch.full((4, k), UNKNOWN)
    targets[0, 3], targets[1, 3], targets[1, 5] = 1.0, 0.0, 1.0          # rows 2 and 3: no labels at all
    pos, neg = (torch.from_numpy(w) for w in key_weights(targets.numpy()))
    logits = torch.randn(4, k, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = masked_attribute_loss(logits, targets, pos, neg)
    loss.backward()
    grad = logits.grad
    assert loss.item() > 0 and grad[:2].abs().sum() > 0
    assert torch.count_nonzero(grad[2:]) == 0 and torch.count_nonzero(grad[0, :3]) == 0
    moved = logits.detach().clone()
    moved[2:] += 5.0                                                      # the unlabelled photos' logits
    assert masked_attribute_loss(moved, targets, pos, neg).item() == pytest.approx(loss.item())
    nothing = masked_attribute_loss(logits, torch.full((4, k), UNKNOWN), pos, neg)
    assert nothing.item() == 0.0
    # each key's positives and negatives weigh half each: key 3 has one of each; key 5 has only positives, so
    # one of them weighs little and a negative (none here) would weigh much
    assert pos[3] == pytest.approx(neg[3]) == pytest.approx(1.0) and pos[5] < 1.0 < neg[5]


def _attribute_photos(shared_data, corpus_root, ground_truth, store, batch: str, n: int):
    """``n`` photos of ``batch`` with known attribute cells and ``n`` without any attribute row, their room
    labels in ``store`` and the attribute labels of attributes.csv imported (the default evidence policy):
    (labelled [(path, class)], plain [(path, class)], targets {path: row})."""
    import csv

    from roomclf.train.attributes import import_attributes
    from roomclf.train.multitask import photo_targets

    with open(shared_data / "attributes.csv", newline="") as f:
        with_rows = {r["path"] for r in csv.DictReader(f)}
    rows = sorted((p, r["label"]) for p, r in ground_truth.items() if p.startswith(batch + "/") and r["label"])
    candidates = [(p, c) for p, c in rows if p in with_rows][:4 * n]
    plain = [(p, c) for p, c in rows if p not in with_rows][:n]
    store.set_labels(candidates + plain, "imported")
    import_attributes(store, shared_data / "attributes.csv", corpus_root, paths=[p for p, _ in candidates])
    labels = dict(candidates + plain)
    targets = photo_targets(store, labels, list(labels), ["imported"])
    labelled = [(p, c) for p, c in candidates if p in targets][:n]
    assert len(labelled) == n and not any(p in targets for p, _ in plain)
    return labelled, plain, targets


def test_multitask_training_adds_the_attribute_loss_of_labelled_photos_only(corpus_root, shared_data, ground_truth,
                                                                            tmp_path):
    """A small real fit with ``attribute_loss_weight``: in a batch of photos with attribute labels the loss is
    the room loss plus the attribute term and the attribute head gets a gradient; in a batch of photos without
    any, the loss is the room loss alone and the head's gradient is exactly 0. The head learns; the network
    then exports with the same three outputs, and onnxruntime agrees with torch on the attributes too."""
    import torch
    from fastai.callback.core import Callback

    from roomclf.labels.store import LabelStore
    from roomclf.models.backbones import get_spec
    from roomclf.models.network import ExportNet
    from roomclf.models.onnx_file import OUTPUTS, OnnxModel, export_onnx
    from roomclf.photos import model_input
    from roomclf.train.data import TrainData, class_weights
    from roomclf.train.learner import build_dls, fit, make_learner

    store = LabelStore(tmp_path / "labels.sqlite")
    labelled, plain, targets = _attribute_photos(shared_data, corpus_root, ground_truth, store, "batch_01", 4)
    items = plain + labelled                       # in this order: batch 1 without labels, batch 2 with
    data = TrainData(train=items, valid=items, attributes=targets)
    spec = get_spec("efficientnet_lite0")
    recipe = Recipe(attribute_loss_weight=1.0)
    dls = build_dls(corpus_root, data, 64, 4, spec.mean, spec.std, recipe=recipe)
    dls.train.shuffle = False
    assert list(dls.vocab) == list(CLASSES)
    learn = make_learner(dls, "efficientnet_lite0", class_weights([c for _, c in items]), recipe=recipe)
    head = learn.model.attribute_head.linear
    before = head.weight.detach().clone()
    seen, grads = [], []

    class Probe(Callback):
        def after_loss(self):
            room = float(self.learn.loss_func(self.learn.pred, *self.learn.yb))
            known = int((self.learn.attribute_loss.attribute_targets >= 0).sum())
            seen.append((self.training, known, float(self.learn.loss) - room))

        def after_backward(self):
            grads.append(float(head.weight.grad.abs().sum()))

    with learn.no_bar(), learn.no_logging():
        fit(learn, 1, 0, 1e-4, cbs=[Probe()], recipe=recipe)     # one small step: the term stays visible
    assert [(t, k > 0) for t, k, _ in seen] == [(True, False), (True, True), (False, False), (False, True)]
    assert [extra for _, k, extra in seen if not k] == [0.0, 0.0]
    assert all(extra > 1e-4 for _, k, extra in seen if k), seen
    assert grads[0] == 0.0 and grads[1] > 0
    assert not torch.allclose(head.weight, before)
    assert learn.model.pool._forward_hooks == {}                 # the loss hook is gone after fitting

    net = learn.model.cpu().eval()
    export_net = ExportNet(net, net.attribute_head).eval()
    model = OnnxModel(export_onnx(export_net, tmp_path / "model.onnx", {"input_size": 64}))
    x = np.stack([model_input(corpus_root / p, 64) for p, _ in items])
    out = model.run(x)
    with torch.no_grad():
        expected = dict(zip(OUTPUTS, (t.numpy() for t in export_net(torch.from_numpy(x)))))
    assert set(out) == set(OUTPUTS) and out["attributes"].shape == (len(items), len(net.attribute_head.linear.bias))
    assert all(np.abs(out[k] - expected[k]).max() <= 1e-4 for k in OUTPUTS)
    assert out["attributes"].std() > 1e-3                           # the trained head, not the empty default


@pytest.mark.parametrize("pooling", ["gem", "max"])
def test_pooling_is_carried_into_the_onnx_graph(pooling, corpus_root, ground_truth, tmp_path):
    """``pooling``: the network's features (what the class head, the attribute heads and the embedding read)
    are pooled its way in torch and in the exported graph alike, on real photos; GeM with p = 1 is the average."""
    import torch

    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import OUTPUTS, OnnxModel, export_onnx
    from roomclf.photos import model_input

    torch.manual_seed(0)
    net = RoomNet("efficientnet_lite0", pretrained=True, pooling=pooling).eval()
    if pooling == "gem":
        assert net.pool.p.requires_grad and net.pool.p.item() == 3.0
        with torch.no_grad():
            net.pool.p.fill_(2.5)                                         # as if learnt
    photos = [p for p, _ in pick_photos(ground_truth, "batch_04", 7)][:4]
    x = np.stack([model_input(corpus_root / p, 96) for p in photos])
    export_net = ExportNet(net).eval()
    model = OnnxModel(export_onnx(export_net, tmp_path / "model.onnx", {"input_size": 96}))
    assert model.meta["pooling"] == pooling
    out = model.run(x)
    with torch.no_grad():
        expected = dict(zip(OUTPUTS, (t.numpy() for t in export_net(torch.from_numpy(x)))))
        fmap = net.body(export_net.normalize(torch.from_numpy(x)))
    assert all(np.abs(out[k] - expected[k]).max() <= 1e-4 for k in OUTPUTS)
    average = torch.nn.functional.normalize(fmap.mean((2, 3)), dim=1).numpy()
    assert np.abs(out["embedding"] - average).max() > 1e-2               # not the average pooling
    if pooling == "gem":
        with torch.no_grad():
            net.pool.p.fill_(1.0)
            assert torch.allclose(net.pool(fmap), fmap.clamp(min=1e-6).mean((2, 3)), atol=1e-5)


def test_splitter_puts_the_pooling_and_the_attribute_head_with_the_class_head():
    from roomclf.models.network import RoomNet
    from roomclf.train.learner import room_splitter

    net = RoomNet("efficientnet_lite0", pretrained=False, pooling="gem", with_attributes=True)
    early, late, head = room_splitter(net)
    ids = [id(p) for group in (early, late, head) for p in group]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())   # every parameter, exactly once
    expected = [*net.head.parameters(), net.pool.p, *net.attribute_head.parameters()]
    assert {id(p) for p in head} == {id(p) for p in expected}
