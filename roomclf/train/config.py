"""What a training run is told to do: every knob of the recipe (``Recipe``, changed by ``parse_recipe``),
the run's configuration (``TrainConfig``) and its one check (``check_config``), the label sources and
sure-precision constants, and ``TrainingError``, the one-line refusal of training input that cannot work.
"""
from __future__ import annotations

from dataclasses import dataclass

from roomclf.errors import RoomclfError
from roomclf.labels.sources import HUMAN_SOURCES, LabelSource

DEFAULT_SOURCES = (LabelSource.MANUAL, LabelSource.IMPORTED, LabelSource.PROPAGATED)
# Validation counts only HUMAN_SOURCES, labels a person gave (or imported): propagated labels are the confident,
# easy photos, and validating on them reads well above what the same model scores on human labels (measured).
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
                                         # (self-training, bench/bench_train.py runs `labels1k-lite1-self` and
                                         # `labels1k-self`: a student gains on its 1,000 hand labels but does not
                                         # beat its teacher with flip TTA, docs/benchmarks.md, train: so
                                         # `predicted` is not among the default --sources)
    label_smoothing: float = 0.0         # 0: plain cross-entropy; eps of fastai's label-smoothing loss
    mixup: float = 0.0                   # 0: off; else MixUp's Beta(alpha, alpha) in every epoch
    small_size: int = 0                  # progressive resizing: 0 off; else the frozen epochs and the first
    small_epochs: int = 1                # small_epochs unfrozen ones train on photos of this size, the rest at
                                         # the input size (bench/bench_train.py, 1,000 labels, TUNE: it helped
                                         # efficientnet_lite0 in run `labels1k-prog160` but cost
                                         # efficientnet_lite2 in `labels1k-lite2-seed43-prog192`, docs/benchmarks.md,
                                         # train: off by default)
    balanced_sampling: bool = False      # each epoch draws training photos with probability 1 / (their class's
                                         # count), so every class is seen about equally often; replaces the
                                         # class-weighted loss (class_weighted is then ignored)
    flip_tta: bool = False               # exported model averages the photo and its mirror (twice the compute;
                                         # off: it helped efficientnet_lite0 in run `default` but not the default
                                         # efficientnet_lite2 in runs `lite2` and `lite2-300`: docs/benchmarks.md,
                                         # train)
    temperature: float = 2.0             # distillation (`roomclf distill`): the teacher's and the student's
                                         # distributions are compared at this temperature
    live_teacher: bool = False           # distillation: the teacher also predicts every training batch as the
                                         # student sees it (augmented, mixed), instead of its photo's plain
                                         # prediction only (roomclf.train.distill.live_teacher_callback)
    pooling: str = "avg"                 # the last feature map -> the features every head reads: avg, max or
                                         # gem (roomclf.models.network.POOLINGS); carried into the export
    attribute_loss_weight: float = 0.0   # multi-task fine-tuning: 0 off (the attribute heads are fitted on the
                                         # trained body's features afterwards); else the masked attribute BCE
                                         # times this is added to the room loss, and the export carries the
                                         # head trained with the body (roomclf.train.multitask)
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
    # efficientnet_lite2 (at 300 px) is the default: on TUNE, with all of TRAIN, it scored best of the single
    # networks (bench/bench_train.py run `lite2-300` against `lite2`, `lite0-rerun`, `lite1`), and no averaged
    # pair beat it as one network: `ens-lite2-lite0-rerun` only ties it at both networks' model time
    # (bench/bench_ensemble.py), and `ens-lite2-300-lite0-rerun` scores lower (docs/benchmarks.md, train and
    # ensemble). The demo trains efficientnet_lite0 (minutes).
    backbone: str = "efficientnet_lite2"
    image_size: int | None = None              # None: the backbone's train_size (efficientnet_lite2: 300)
    frozen_epochs: int = 2                     # the recipe of bench/bench_train.py run `lite2-300`
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = 1.6e-3                  # None: lr_find
    seed: int = 42
    workers: int = 0                           # DataLoader worker processes
    quantize: bool = False
    # the gate: a model at most this much less accurate (a fraction of the validation photos) than the
    # champion still replaces it when it is clearly faster (roomclf.train.gate.decide)
    gate_tolerance: float = 0.003
    teacher: str | None = None                 # distillation: the model whose predictions the student learns
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
    if not 0 <= cfg.gate_tolerance < 1:
        raise TrainingError(f"--gate-tolerance must be at least 0 and below 1 (got {cfg.gate_tolerance})")
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
    _check_multitask(cfg)
    if r.live_teacher and not cfg.teacher:
        raise TrainingError("recipe: live_teacher is for distillation: it needs a teacher (roomclf distill)")
    if min(r.parity_photos, r.int8_calibration_photos, r.lr_find_iters) < 1:
        raise TrainingError("recipe: parity_photos, int8_calibration_photos and lr_find_iters must be >= 1")


def _check_multitask(cfg: TrainConfig) -> None:
    from roomclf.models.network import POOLINGS

    r = cfg.recipe
    if r.pooling not in POOLINGS:
        raise TrainingError(f"recipe: pooling is one of {', '.join(POOLINGS)} (got {r.pooling!r})")
    if r.attribute_loss_weight < 0:
        raise TrainingError(f"recipe: attribute_loss_weight must be >= 0 (got {r.attribute_loss_weight:g})")
    if r.attribute_loss_weight and (r.mixup or cfg.teacher):
        raise TrainingError("recipe: attribute_loss_weight needs photos with their own labels: not with mixup "
                            "(mixed photos) nor with a teacher (distillation)")
