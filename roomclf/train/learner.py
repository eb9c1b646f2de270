"""The fast.ai side of training: the DataLoaders of a run's photos (``build_dls``), the Learner over the
room network (``make_learner``), the learning-rate finder (``find_lr``) and the schedule (``fit``: the
head with the body frozen, then discriminative fine-tuning).
"""
from __future__ import annotations

import operator
import os
from collections import Counter

import numpy as np

from roomclf import storage
from roomclf.photos import model_pixels
from roomclf.taxonomy import CLASSES
from roomclf.train.config import DEFAULT_RECIPE, Recipe, TrainingError
from roomclf.train.data import TrainData


class PhotoReader:
    """fastai ``get_x``: a (path, label) item -> the square PIL image ``model_input`` would see (the photo read
    through ``roomclf.storage``: the root may be an s3:// URI)."""

    def __init__(self, root: str | os.PathLike, size: int):
        self.root, self.size = str(root), int(size)

    def __call__(self, item):
        from fastai.vision.core import PILImage

        return PILImage.create(model_pixels(storage.join(self.root, item[0]), self.size))


def room_splitter(model):
    """Parameter groups for discriminative learning rates: early body, late body, head (the class head, with
    the pooling's parameters (GeM's exponent) and the attribute head of multi-task training, if any: these
    learn with the body frozen too).

    The body is halved the way fastai splits its own CNN learners, so ``slice(lr / 100, lr)``
    gives the early layers lr/100, the late layers lr/10 and the head lr. With two groups the whole body
    got lr/100 and barely moved: an earlier bench/bench_train.py run with two groups (and 2 unfrozen
    epochs) scored clearly below this split with 3 (run `default`, docs/benchmarks.md, train).
    """
    from fastai.torch_core import params

    owners = [m for m in model.body.modules() if next(m.parameters(recurse=False), None) is not None]
    half = len(owners) // 2
    early = [p for m in owners[:half] for p in m.parameters(recurse=False)]
    late = [p for m in owners[half:] for p in m.parameters(recurse=False)]
    head = params(model.head) + params(model.pool)
    if getattr(model, "attribute_head", None) is not None:
        head += params(model.attribute_head)
    return [early, late, head]


def build_dls(root: str | os.PathLike, data: TrainData, size: int, batch_size: int, mean, std,
              seed: int = 42, workers: int = 0, recipe: Recipe = DEFAULT_RECIPE):
    """fastai DataLoaders: augmentations on train only, the backbone's normalisation on both. With
    ``data.soft`` (distillation) the targets are class distributions: the teacher's on the training
    photos, the human label's one-hot on the validation photos. With ``data.attributes`` (multi-task) a batch
    is (photos, attribute targets, classes): the attribute targets come before the class so that the
    DataLoaders' vocabulary stays the classes (``roomclf.train.multitask``)."""
    from fastai.data.block import CategoryBlock, DataBlock, RegressionBlock
    from fastai.data.transforms import IndexSplitter, Normalize
    from fastai.vision.augment import aug_transforms
    from fastai.vision.data import ImageBlock

    from roomclf.train.distill import SoftTarget

    items = [list(item) for item in (*data.train, *data.valid)]   # lists: fastai maps transforms over tuples
    if data.soft is not None:
        onehot = np.eye(len(CLASSES), dtype=np.float32)
        items = ([[p, c, data.soft[p].tolist()] for p, c in data.train]
                 + [[p, c, onehot[CLASSES.index(c)].tolist()] for p, c in data.valid])
    target = ((RegressionBlock(n_out=len(CLASSES)), SoftTarget()) if data.soft is not None
              else (CategoryBlock(vocab=list(CLASSES), sort=False), operator.itemgetter(1)))
    blocks, get_y = (target[0],), target[1]
    if data.attributes is not None and data.soft is None:
        from roomclf.train.multitask import unknown_row

        unknown = unknown_row()
        items = [[p, c, data.attributes[p].tolist() if p in data.attributes else unknown] for p, c in items]
        blocks, get_y = (RegressionBlock(n_out=len(unknown)), target[0]), [operator.itemgetter(2), target[1]]
    block = DataBlock(blocks=(ImageBlock, *blocks), n_inp=1,
                      get_x=PhotoReader(root, size), get_y=get_y,
                      splitter=IndexSplitter(list(range(len(data.train), len(items)))),
                      batch_tfms=[*aug_transforms(size=size, max_rotate=recipe.max_rotate, max_warp=recipe.max_warp,
                                                  pad_mode=recipe.pad_mode),
                                  Normalize.from_stats(list(mean), list(std))])
    if recipe.balanced_sampling:
        import fastai.callback.data  # noqa: F401  (DataBlock.weighted_dataloaders)

        counts = Counter(c for _, c in data.train)
        weights = [1.0 / counts[c] for _, c in data.train] + [1.0] * len(data.valid)   # valid: not sampled
        return block.weighted_dataloaders(items, weights, bs=batch_size, num_workers=workers, seed=seed)
    return block.dataloaders(items, bs=batch_size, num_workers=workers, seed=seed)


def build_small_dls(root: str | os.PathLike, data: TrainData, batch_size: int, mean, std, seed: int = 42,
                    workers: int = 0, recipe: Recipe = DEFAULT_RECIPE):
    """``build_dls`` at ``recipe.small_size`` for progressive resizing (``fit``'s ``small_dls``); None when off."""
    if not recipe.small_size:
        return None
    return build_dls(root, data, recipe.small_size, batch_size, mean, std, seed, workers, recipe=recipe)


def _keep_bn_stats_callback():
    from fastai.callback.core import Callback

    class KeepBnStats(Callback):
        """The body's BatchNorm layers keep their ImageNet statistics in both phases.

        Measured on 300 photos at 224 px: letting batches of 32 augmented photos overwrite
        them cost a large, erratic share of validation accuracy (frozen and unfrozen phase alike).
        """
        order = 1

        def before_train(self):
            from torch import nn

            for m in self.learn.model.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    return KeepBnStats


def make_learner(dls, backbone: str, weights: np.ndarray, pretrained: bool = True, train_bn: bool = False,
                 recipe: Recipe = DEFAULT_RECIPE, soft: bool = False):
    """A fastai Learner over ``roomclf.models.network.RoomNet`` with a class-weighted loss (plain with
    ``recipe.balanced_sampling``, which balances the classes by drawing instead). ``soft``: a student
    learning a teacher's distributions (``build_dls`` with ``data.soft``): the distillation loss at
    ``recipe.temperature`` and top-1 accuracy against the targets' top class.

    ``recipe.pooling`` pools the last feature map (``roomclf.models.network.POOLINGS``). With
    ``recipe.attribute_loss_weight`` the network carries an attribute head that learns beside the class
    head (multi-task; the DataLoaders must carry attribute targets: ``build_dls`` with ``data.attributes``).

    ``train_bn=False`` keeps the body's BatchNorm weights frozen with the body, so the
    frozen phase never back-propagates through the body, which makes it much faster on a CPU.
    """
    import fastai.callback.progress  # noqa: F401  (progress bars, no_bar)
    import fastai.callback.schedule  # noqa: F401  (fit_one_cycle, lr_find)
    import torch
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
    from fastai.metrics import F1Score, accuracy

    from roomclf.models.network import RoomNet

    KeepBnStats = _keep_bn_stats_callback()
    multitask = recipe.attribute_loss_weight > 0
    net = RoomNet(backbone, pretrained=pretrained, dropout=recipe.head_dropout, pooling=recipe.pooling,
                  with_attributes=multitask)
    cbs = [KeepBnStats()]
    if multitask:
        from roomclf.train.multitask import attribute_loss_callback

        cbs.append(attribute_loss_callback(recipe.attribute_loss_weight, _train_attribute_targets(dls)))
    use_weights = recipe.class_weighted and not recipe.balanced_sampling   # not both corrections at once
    weight = torch.tensor(weights, device=dls.device) if use_weights else None
    loss = (LabelSmoothingCrossEntropyFlat(weight=weight, eps=recipe.label_smoothing) if recipe.label_smoothing
            else CrossEntropyLossFlat(weight=weight))
    metrics = [accuracy, F1Score(average="macro")]
    if soft:
        from roomclf.train.distill import soft_accuracy, soft_target_loss

        loss, metrics = soft_target_loss(recipe.temperature), [soft_accuracy]
    return Learner(dls, net, loss_func=loss, metrics=metrics,
                   splitter=room_splitter, train_bn=train_bn, cbs=cbs)


def _train_attribute_targets(dls) -> np.ndarray:
    """The attribute targets of the training photos of ``build_dls``'s DataLoaders (multi-task)."""
    items = list(dls.train_ds.items)
    if not items or len(items[0]) < 3:
        raise TrainingError("recipe attribute_loss_weight is on, but the training photos carry no attribute "
                            "targets")
    return np.array([item[2] for item in items], np.float32)


def find_lr(learn, recipe: Recipe = DEFAULT_RECIPE) -> float:
    """A cheap lr_find (body frozen): the 'valley' suggestion, kept in a sane range."""
    learn.freeze()
    with learn.no_logging(), learn.no_bar():
        suggestion = learn.lr_find(num_it=recipe.lr_find_iters, show_plot=False)
    lr = float(getattr(suggestion, "valley", suggestion[0]))
    return float(min(max(lr, recipe.lr_min), recipe.lr_max))


def _train_on_after(epochs: int, dls):
    """A fastai callback that switches the learner to ``dls`` from epoch ``epochs`` of a cycle on."""
    from fastai.callback.core import Callback

    class TrainOnAfter(Callback):
        def before_epoch(self):
            if self.epoch >= epochs:
                self.learn.dls = dls

    return TrainOnAfter()


def fit(learn, frozen_epochs: int, epochs: int, lr: float, cbs=None, recipe: Recipe = DEFAULT_RECIPE,
        small_dls=None, teacher: str | os.PathLike | None = None) -> None:
    """Head only with the body frozen, then everything with lower rates for the body. With ``small_dls``
    (``build_small_dls``) the frozen epochs and the first ``recipe.small_epochs`` unfrozen
    ones train on those smaller photos (progressive resizing); the learner ends on its own DataLoaders.
    With ``recipe.live_teacher``, ``teacher`` (a student's teacher: its ONNX file) predicts every training
    batch while this runs (``roomclf.train.distill.live_teacher_callback``); the learner keeps no trace of it,
    so it exports as any other."""
    full = learn.dls
    first = full if small_dls is None else small_dls
    if recipe.mixup > 0:
        from fastai.callback.mixup import MixUp

        cbs = [*(cbs or []), MixUp(recipe.mixup)]
    if recipe.live_teacher:
        if teacher is None:
            raise TrainingError("recipe live_teacher: the student's teacher (its ONNX file) is needed")
        from roomclf.models.backbones import get_spec
        from roomclf.train.distill import live_teacher_callback

        spec = get_spec(learn.model.backbone)
        cbs = [*(cbs or []), live_teacher_callback(teacher, spec.mean, spec.std)]
    if frozen_epochs > 0:
        # Only the new head learns here: a higher rate than lr_find's conservative 'valley'
        # (measured: with a few dozen steps per epoch the head is otherwise left half-trained).
        learn.freeze()
        learn.dls = first
        learn.fit_one_cycle(frozen_epochs, min(recipe.frozen_lr_mult * lr, recipe.frozen_lr_cap), cbs=cbs)
    if epochs > 0:
        learn.unfreeze()
        # fastai's fine_tune halves its base rate (default 2e-3) here; capped so an lr_find
        # valley meant for the head alone cannot shake the body (measured in the demo: lr_find's
        # higher suggestion made the unfrozen epoch lose accuracy, the bench's rate gained).
        base = min(lr, recipe.unfrozen_lr_cap) / recipe.unfrozen_lr_div
        learn.dls = first
        resize = [_train_on_after(recipe.small_epochs, full)] if small_dls is not None else []
        learn.fit_one_cycle(epochs, slice(base / recipe.body_lr_ratio, base), pct_start=recipe.pct_start,
                            cbs=[*(cbs or []), *resize])
    learn.dls = full
    learn.freeze()  # leaves BN running stats as trained; eval mode is set at export

