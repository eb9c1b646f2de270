"""Training the room classifier the fast.ai way: data from the label store, a
DataBlock through the shared photo loader, transfer learning with the body
frozen, then discriminative fine-tuning.

The steps are separate functions that take data and return data:
``select_data`` (label store -> checked train/valid lists, or a one-line
``TrainingError`` before anything is trained), ``drop_broken`` and
``drop_leaks`` (clean the lists, counting what went), ``build_dls`` and
``make_learner`` (fastai objects), ``fit`` (the training schedule) and
``predict`` (validation probabilities). Tracking, export and registration
live in ``roomclf.train.report``, ``roomclf.models.onnx_file`` and ``roomclf.train.gate``;
``roomclf.train.run`` ties them together.
"""
from __future__ import annotations

import hashlib
import operator
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf.errors import RoomclfError
from roomclf.photos import PhotoError, model_pixels, open_photo
from roomclf.settings import DEFAULT_BACKBONE
from roomclf.taxonomy import CLASSES

DEFAULT_SOURCES = ("manual", "imported", "propagated")
# Validation counts only labels a person gave (or imported): propagated labels are the confident,
# easy photos, and validating on them reads high (97.7% against 81% on human labels, measured).
HUMAN_SOURCES = ("manual", "imported")
MIN_VALID_PHOTOS = 20
# A trained model records the confidence at which it reached each of these precisions on its validation
# photos (export metadata ``sure_confidence``); prelabel copies that table onto its `predicted` labels.
SURE_PRECISIONS = (0.9, 0.95, 0.98, 0.99)


def sure_key(precision: float) -> str:
    """The key of ``precision`` in a ``sure_confidence`` table (JSON keys are strings): '0.95'."""
    return f"{precision:g}"


class TrainingError(RoomclfError):
    """Training input that cannot work (no labels, overlapping batches, a class without examples...)."""


@dataclass(frozen=True)
class Recipe:
    """Every knob of how a model is trained, in one place (logged whole to MLflow as ``recipe.*``).

    The values are the measured defaults (see docs/benchmarks.md, train section).
    """
    head_dropout: float = 0.2            # before the class head
    class_weighted: bool = True          # inverse-frequency loss weights
    max_rotate: float = 10.0             # augmentation (train only): degrees
    max_warp: float = 0.1
    pad_mode: str = "reflection"
    lr_find_iters: int = 40              # when no lr is given
    lr_min: float = 1e-4                 # lr_find's suggestion is clipped to [lr_min, lr_max]
    lr_max: float = 1e-2
    frozen_lr_mult: float = 10.0         # the head alone learns at lr x this (capped): lr_find is conservative
    frozen_lr_cap: float = 2e-2
    unfrozen_lr_cap: float = 2e-3        # the unfrozen base rate: min(lr, cap) / unfrozen_lr_div, as fine_tune
    unfrozen_lr_div: float = 2.0
    body_lr_ratio: float = 100.0         # the early body learns at base / this (discriminative rates)
    pct_start: float = 0.3               # one-cycle warm-up share in the unfrozen phase
    sure_precision: float = 0.95         # `predicted` labels are trained on only at or above the confidence where
                                         # the model that made them was this precise on its validation photos
                                         # (self-training; bench_train --pseudo, 1,000 hand labels + 2,443 such:
                                         # lite1 +0.4 on TUNE, -0.4 with flip TTA; lite0 taught by lite1 +1.9:
                                         # `predicted` is not among the default --sources)
    label_smoothing: float = 0.0         # 0: plain cross-entropy; eps of fastai's label-smoothing loss
    mixup: float = 0.0                   # 0: off; else MixUp's Beta(alpha, alpha) in every epoch
    small_size: int = 0                  # progressive resizing: 0 off; else the frozen epochs and the first
    small_epochs: int = 1                # small_epochs unfrozen ones train on photos of this size, the rest at
                                         # the input size (bench_train, 1,000 labels, TUNE: efficientnet_lite0
                                         # at 160 px +1.0, efficientnet_lite2 at 192 px -1.6: off by default)
    balanced_sampling: bool = False      # each epoch draws training photos with probability 1 / (their class's
                                         # count), so every class is seen about equally often; replaces the
                                         # class-weighted loss (class_weighted is then ignored)
    flip_tta: bool = False               # exported model averages the photo and its mirror (2x the compute;
                                         # TUNE +0.26 points, TEST +0.32: docs/benchmarks.md, train)
    parity_photos: int = 16              # validation photos for the torch/ONNX parity check
    int8_calibration_photos: int = 50    # training photos that calibrate the int8 twin


DEFAULT_RECIPE = Recipe()


def _as_bool(text: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


def parse_recipe(text: str | None, base: Recipe = DEFAULT_RECIPE) -> Recipe:
    """``"label_smoothing=0.1,mixup=0.4"`` -> a Recipe with those knobs changed (``""``/``"defaults"``: none).
    Unknown knobs and values of the wrong type are a ``TrainingError`` in one line."""
    from dataclasses import fields, replace

    text = (text or "").strip()
    if text in ("", "defaults"):
        return base
    types = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    changes = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise TrainingError(f"--recipe: {item!r} is not KNOB=VALUE with a knob of {', '.join(types)}")
        kind, value = types[key], value.strip()
        try:
            changes[key] = _as_bool(value) if kind is bool else kind(value)
        except ValueError:
            raise TrainingError(f"--recipe: {key} takes a {kind.__name__}, not {value!r}") from None
    return replace(base, **changes)


@dataclass
class TrainConfig:
    data: str                                  # corpus root
    train_batches: list[str]
    valid_batches: list[str]
    sources: tuple[str, ...] = DEFAULT_SOURCES
    valid_sources: tuple[str, ...] = HUMAN_SOURCES
    # bench_train, all of TRAIN, on TUNE: efficientnet_lite2 at 300 px 93.25% (macro-F1 0.918, 76 min here),
    # at 260 px 92.8%, lite0 and lite1 90.7% each; averaged pairs no higher (lite2 at 260 + lite0: 93.25% at
    # 1.2-1.4x lite2-260's model time per photo; lite2 at 300 + lite0: 93.2%): lite2 is the default; the demo
    # trains lite0 (minutes)
    backbone: str = "efficientnet_lite2"
    image_size: int | None = None              # None: the backbone registry's (efficientnet_lite2: 300)
    frozen_epochs: int = 2                     # bench/bench_train.py `lite2-300`: TUNE 93.25%
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = 1.6e-3                  # None: lr_find
    seed: int = 42
    workers: int = 0                           # DataLoader worker processes
    quantize: bool = False
    run_name: str | None = None
    recipe: Recipe = DEFAULT_RECIPE


def check_config(cfg: TrainConfig) -> None:
    """The one check of a run's configuration, before any work (``TrainingError`` in one line)."""
    if min(cfg.frozen_epochs, cfg.epochs) < 0 or cfg.frozen_epochs + cfg.epochs == 0:
        raise TrainingError("--frozen-epochs and --epochs must be >= 0, and not both 0")
    if cfg.batch_size < 1 or (cfg.image_size is not None and cfg.image_size < 32):
        raise TrainingError("--batch-size must be >= 1 and --image-size >= 32")
    if cfg.lr is not None and not 0 < cfg.lr < 1:
        raise TrainingError(f"--lr must be between 0 and 1 (got {cfg.lr})")
    r = cfg.recipe
    if not 0 <= r.label_smoothing < 1 or r.mixup < 0 or not 0 <= r.head_dropout < 1 or not 0 < r.pct_start < 1:
        raise TrainingError("recipe: label_smoothing and head_dropout must be in [0, 1), mixup >= 0, "
                            "pct_start in (0, 1)")
    if min(r.lr_min, r.lr_max, r.frozen_lr_mult, r.frozen_lr_cap, r.unfrozen_lr_cap, r.unfrozen_lr_div,
           r.body_lr_ratio) <= 0 or r.lr_min > r.lr_max:
        raise TrainingError("recipe: learning-rate knobs must be > 0 and lr_min <= lr_max")
    if r.sure_precision not in SURE_PRECISIONS:
        raise TrainingError(f"recipe: sure_precision is one of {', '.join(map(sure_key, SURE_PRECISIONS))}")
    if r.small_size and (r.small_size < 32 or r.small_epochs < 0):
        raise TrainingError("recipe: small_size must be 0 (off) or >= 32, and small_epochs >= 0")
    if min(r.parity_photos, r.int8_calibration_photos, r.lr_find_iters) < 1:
        raise TrainingError("recipe: parity_photos, int8_calibration_photos and lr_find_iters must be >= 1")


@dataclass
class TrainData:
    train: list[tuple[str, str]]               # (relative path, class)
    valid: list[tuple[str, str]]
    broken: dict[str, str] = field(default_factory=dict)               # path -> reason (dropped)
    leaks: list[str] = field(default_factory=list)                     # valid paths dropped as duplicates
    unsure: int = 0                    # `predicted` labels left out: below their model's sure confidence
    origin: dict[str, str] = field(default_factory=dict)               # path -> label source

    def class_counts(self, split: str) -> dict[str, int]:
        counts = Counter(label for _, label in getattr(self, split))
        return {c: counts.get(c, 0) for c in CLASSES}

    @property
    def sources(self) -> dict[str, dict[str, int]]:
        """split -> label source -> photos, of the photos each split holds now (after any drops)."""
        return {split: dict(Counter(self.origin.get(p, "") for p, _ in getattr(self, split)))
                for split in ("train", "valid")}


# ---- data selection and checks ----------------------------------------------------------

def is_sure(label, precision: float) -> bool:
    """Whether a label may be trained on: any label but a `predicted` one; a `predicted` one only when its
    confidence reaches the one at which its model was ``precision``-precise on validation (recorded by
    prelabel in ``extra["sure_confidence"]``; a zero-shot suggestion has none, so it never counts)."""
    if label.source != "predicted":
        return True
    at = ((label.extra or {}).get("sure_confidence") or {}).get(sure_key(precision))
    return at is not None and label.confidence is not None and label.confidence >= at


def select_data(store, root: str | os.PathLike, train_batches: list[str], valid_batches: list[str],
                sources=DEFAULT_SOURCES, valid_sources=HUMAN_SOURCES,
                sure_precision: float = Recipe.sure_precision) -> TrainData:
    """The effective labels of the train and valid batches (``sources`` for training,
    ``valid_sources`` for validation; `predicted` ones only where ``is_sure``), checked;
    raises ``TrainingError``."""
    overlap = sorted(set(train_batches) & set(valid_batches))
    if overlap:
        raise TrainingError(f"train and validation batches overlap ({', '.join(overlap)}): "
                            "validate on a different batch")
    if not train_batches or not valid_batches:
        raise TrainingError("give at least one train batch and one validation batch")
    sources, valid_sources = tuple(sources), tuple(valid_sources)
    if not sources or not valid_sources:
        raise TrainingError("no label sources given (e.g. manual,imported,propagated)")
    root = Path(root)
    data = TrainData([], [])
    for split, batches, wanted in (("train", train_batches, sources), ("valid", valid_batches, valid_sources)):
        items = []
        for batch in batches:
            for path, lab in sorted(store.labels(wanted, prefix=f"{batch}/").items()):
                if not is_sure(lab, sure_precision):
                    data.unsure += 1
                    continue
                if lab.label not in CLASSES:
                    raise TrainingError(f"unknown class {lab.label!r} for {path} (source {lab.source}); "
                                        f"classes are {', '.join(CLASSES)}")
                items.append((path, lab.label))
                data.origin[path] = lab.source
        if not items:
            raise TrainingError(f"no {split} labels from sources {','.join(wanted)} in "
                                f"{','.join(batches)} (import or label some first)")
        missing = [p for p, _ in items if not (root / p).is_file()]
        if missing:
            raise TrainingError(f"{len(missing)} {split} labels point at photos that do not exist under "
                                f"{root.name}/, e.g. {missing[0]}")
        setattr(data, split, items)
    empty = [c for c, n in data.class_counts("train").items() if n == 0]
    if empty:
        raise TrainingError(f"no training examples of {', '.join(empty)} in {','.join(train_batches)}: "
                            "every class needs at least one")
    check_validation_size(data.valid, valid_sources)
    return data


def check_validation_size(valid: list, valid_sources, minimum: int = MIN_VALID_PHOTOS, dropped: str = "") -> None:
    """``dropped``: what was taken out of the validation photos before this check, said in the error."""
    if len(valid) < minimum:
        raise TrainingError(f"only {len(valid)} validation photos labelled by {','.join(valid_sources)}"
                            f"{f' left after dropping {dropped}' if dropped else ''}: at least "
                            f"{minimum} are needed for a validation figure to mean anything (label more of the "
                            "validation batches, or pass --valid-sources)")


def drop_broken(root: str | os.PathLike, items: list[tuple[str, str]], size: int):
    """(usable items, {path: reason}) after opening every photo once with the shared loader."""
    from tqdm import tqdm

    kept, broken = [], {}
    for path, label in tqdm(items, desc="checking photos open", unit="photo", disable=None, leave=False):
        try:
            open_photo(Path(root) / path, target=size)
            kept.append((path, label))
        except PhotoError as exc:
            broken[path] = exc.reason
    return kept, broken


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def duplicate_paths(root: str | os.PathLike, train: list[str], valid: list[str], near: bool = True,
                    backbone: str = DEFAULT_BACKBONE) -> list[str]:
    """Validation photos that duplicate a training photo: the same bytes, or (``near``) the
    same picture by embedding similarity (the embeddings propagation uses, whatever network is trained:
    the similarity threshold was set on them, and they are cached)."""
    root = Path(root)
    seen = {_digest(root / p) for p in train}
    dup = {p for p in valid if _digest(root / p) in seen}
    if near:
        from roomclf.propagate.neighbours import near_duplicates

        train_set, valid_set = set(train), set(valid)
        for a, b, _ in near_duplicates(root, list(train) + list(valid), backbone, progress=True):
            if a in valid_set and b in train_set:
                dup.add(a)
            elif b in valid_set and a in train_set:
                dup.add(b)
    return sorted(dup)


def drop_leaks(root: str | os.PathLike, data: TrainData, near: bool = True,
               backbone: str = DEFAULT_BACKBONE) -> TrainData:
    """Remove validation photos that duplicate training photos; they are listed in ``data.leaks``."""
    leaks = duplicate_paths(root, [p for p, _ in data.train], [p for p, _ in data.valid], near, backbone)
    gone = set(leaks)
    data.valid = [(p, c) for p, c in data.valid if p not in gone]
    data.leaks = leaks
    if not data.valid:
        raise TrainingError("every validation photo duplicates a training photo: choose other batches")
    return data


def class_weights(labels: list[str]) -> np.ndarray:
    """Inverse-frequency loss weights in CLASSES order, mean 1 (a rare class counts more)."""
    counts = np.array([max(1, sum(1 for y in labels if y == c)) for c in CLASSES], dtype=np.float64)
    w = counts.sum() / (len(CLASSES) * counts)
    return (w / w.mean()).astype(np.float32)


# ---- fastai -----------------------------------------------------------------------------

class PhotoReader:
    """fastai ``get_x``: a (path, label) item -> the square PIL image ``model_input`` would see."""

    def __init__(self, root: str | os.PathLike, size: int):
        self.root, self.size = str(root), int(size)

    def __call__(self, item):
        from fastai.vision.core import PILImage

        return PILImage.create(model_pixels(os.path.join(self.root, item[0]), self.size))


def room_splitter(model):
    """Parameter groups for discriminative learning rates: early body, late body, head.

    The body is halved the way fastai splits its own CNN learners, so ``slice(lr / 100, lr)``
    gives the early layers lr/100, the late layers lr/10 and the head lr. With two groups the whole body
    got lr/100 and barely moved (bench/bench_train.py: 88.9% with 2 unfrozen epochs;
    90.7% with this split and 3).
    """
    from fastai.torch_core import params

    owners = [m for m in model.body.modules() if next(m.parameters(recurse=False), None) is not None]
    half = len(owners) // 2
    early = [p for m in owners[:half] for p in m.parameters(recurse=False)]
    late = [p for m in owners[half:] for p in m.parameters(recurse=False)]
    return [early, late, params(model.head)]


def build_dls(root: str | os.PathLike, data: TrainData, size: int, batch_size: int, mean, std,
              seed: int = 42, workers: int = 0, recipe: Recipe = DEFAULT_RECIPE):
    """fastai DataLoaders: augmentations on train only, the backbone's normalisation on both."""
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import IndexSplitter, Normalize
    from fastai.vision.augment import aug_transforms
    from fastai.vision.data import ImageBlock

    items = [list(item) for item in (*data.train, *data.valid)]   # lists: fastai maps transforms over tuples
    block = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=list(CLASSES), sort=False)),
                      get_x=PhotoReader(root, size), get_y=operator.itemgetter(1),
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

        Measured on 300 photos at 224 px: letting batches of 32 augmented photos overwrite them
        took validation accuracy from 81.5% to 59-75% (frozen and unfrozen phase alike).
        """
        order = 1

        def before_train(self):
            from torch import nn

            for m in self.learn.model.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    return KeepBnStats


def make_learner(dls, backbone: str, weights: np.ndarray, pretrained: bool = True, train_bn: bool = False,
                 recipe: Recipe = DEFAULT_RECIPE):
    """A fastai Learner over ``roomclf.models.network.RoomNet`` with a class-weighted loss (plain with
    ``recipe.balanced_sampling``, which balances the classes by drawing instead).

    ``train_bn=False`` keeps the body's BatchNorm weights frozen with the body, so the
    frozen phase never back-propagates through the body: about 2.5x faster on a CPU.
    """
    import fastai.callback.progress  # noqa: F401  (progress bars, no_bar)
    import fastai.callback.schedule  # noqa: F401  (fit_one_cycle, lr_find)
    import torch
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
    from fastai.metrics import F1Score, accuracy

    from roomclf.models.network import RoomNet

    KeepBnStats = _keep_bn_stats_callback()
    net = RoomNet(backbone, pretrained=pretrained, dropout=recipe.head_dropout)
    use_weights = recipe.class_weighted and not recipe.balanced_sampling   # not both corrections at once
    weight = torch.tensor(weights, device=dls.device) if use_weights else None
    loss = (LabelSmoothingCrossEntropyFlat(weight=weight, eps=recipe.label_smoothing) if recipe.label_smoothing
            else CrossEntropyLossFlat(weight=weight))
    return Learner(dls, net, loss_func=loss, metrics=[accuracy, F1Score(average="macro")],
                   splitter=room_splitter, train_bn=train_bn, cbs=[KeepBnStats()])


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
        small_dls=None) -> None:
    """Head only with the body frozen, then everything with lower rates for the body. With ``small_dls``
    (``build_small_dls``) the frozen epochs and the first ``recipe.small_epochs`` unfrozen
    ones train on those smaller photos (progressive resizing); the learner ends on its own DataLoaders."""
    full = learn.dls
    first = full if small_dls is None else small_dls
    if recipe.mixup > 0:
        from fastai.callback.mixup import MixUp

        cbs = [*(cbs or []), MixUp(recipe.mixup)]
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
        # 4e-3 made the unfrozen epoch cost 4.5 points; 1.6e-3 gained 1.3).
        base = min(lr, recipe.unfrozen_lr_cap) / recipe.unfrozen_lr_div
        learn.dls = first
        resize = [_train_on_after(recipe.small_epochs, full)] if small_dls is not None else []
        learn.fit_one_cycle(epochs, slice(base / recipe.body_lr_ratio, base), pct_start=recipe.pct_start,
                            cbs=[*(cbs or []), *resize])
    learn.dls = full
    learn.freeze()  # leaves BN running stats as trained; eval mode is set at export


def loader_passes(learn, dl, mirrored: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(probabilities N x 7 of the photos, of their mirror images or None without ``mirrored``, true class
    indices N) of a labelled DataLoader through ``learn.model`` in eval mode: each batch is decoded once."""
    import torch

    model = learn.model.eval()
    plain, mirror, targets = [], [], []
    with torch.inference_mode():
        for xb, yb in dl:
            plain.append(torch.softmax(model(xb).float(), dim=1).cpu().numpy())
            if mirrored:
                mirror.append(torch.softmax(model(torch.flip(xb, dims=[3])).float(), dim=1).cpu().numpy())
            targets.append(yb.cpu().numpy())
    return (np.concatenate(plain), np.concatenate(mirror) if mirrored else None,
            np.concatenate(targets).astype(int))


def loader_probs(learn, dl, flip_tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities N x 7, true class indices N) of a labelled DataLoader; with ``flip_tta`` the mean over
    each photo and its mirror image, as the exported model computes them."""
    plain, mirror, y = loader_passes(learn, dl, mirrored=flip_tta)
    return ((plain + mirror) / 2 if flip_tta else plain), y


def predict(learn, flip_tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``loader_probs`` on the validation set (no augmentation), in the taxonomy's class order."""
    if list(learn.dls.vocab) != list(CLASSES):
        raise TrainingError(f"class order {list(learn.dls.vocab)} is not the taxonomy's {list(CLASSES)}")
    return loader_probs(learn, learn.dls.valid, flip_tta)


def raw_features(net, root: str | os.PathLike, paths: list[str], size: int, batch_size: int = 32,
                 progress: str | None = "features") -> np.ndarray:
    """Pooled features (not L2-normalised) of photos, as the exported model computes them."""
    import torch
    from tqdm import tqdm

    from roomclf.models.backbones import get_spec, normalizer
    from roomclf.photos import model_input

    spec = get_spec(net.backbone)
    normalize = normalizer(spec)
    net = net.eval().cpu()
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(paths), batch_size), desc=progress, unit="batch", disable=None if progress else True,
                      leave=False):
            x = torch.from_numpy(np.stack([model_input(Path(root) / p, size) for p in paths[i:i + batch_size]]))
            out.append(net.features(normalize(x)).numpy())
    return np.concatenate(out) if out else np.zeros((0, spec.feature_dim), np.float32)
