"""The training data: the labels a run trains and validates on, picked from the label store and checked
(``select_data``, or a one-line ``TrainingError`` before anything is trained), then cleaned of photos that
do not open (``drop_broken``) and of validation photos that duplicate training photos (``drop_leaks``),
with the class weights of the loss.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from roomclf import storage
from roomclf.labels.sources import LabelSource
from roomclf.photos import PhotoError, open_photo
from roomclf.settings import EMBEDDING_BACKBONE
from roomclf.taxonomy import CLASSES
from roomclf.train.config import DEFAULT_SOURCES, HUMAN_SOURCES, Recipe, TrainingError, sure_key

MIN_VALID_PHOTOS = 20


@dataclass
class TrainData:
    train: list[tuple[str, str]]               # (relative path, class)
    valid: list[tuple[str, str]]
    broken: dict[str, str] = field(default_factory=dict)               # path -> reason (dropped)
    leaks: list[str] = field(default_factory=list)                     # valid paths dropped as duplicates
    unsure: int = 0                    # `predicted` labels left out: below their model's sure confidence
    origin: dict[str, str] = field(default_factory=dict)               # path -> label source
    soft: dict[str, np.ndarray] | None = None  # distillation: path -> the teacher's probabilities (train photos)
    teacher: object | None = None              # distillation: the roomclf.train.distill.Teacher
    attributes: dict[str, np.ndarray] | None = None   # multi-task: path -> attribute targets (train and valid
                                                      # photos with a label; roomclf.train.multitask)

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
    if label.source != LabelSource.PREDICTED:
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
    root = storage.resolve(root)
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
        present = storage.files_present(root, [p for p, _ in items])
        missing = [p for p, _ in items if p not in present]
        if missing:
            raise TrainingError(f"{len(missing)} {split} labels point at photos that do not exist under "
                                f"{_name(root)}/, e.g. {missing[0]}")
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
            open_photo(storage.join(root, path), target=size)
            kept.append((path, label))
        except PhotoError as exc:
            broken[path] = exc.reason
    return kept, broken


def _name(root) -> str:
    """The last part of a corpus root, folder or URI (what an error shows of it)."""
    return str(root).rstrip("/").rsplit("/", 1)[-1]


def _digest(path) -> str:
    """SHA-1 of a file's bytes (a local file streamed, an object read through ``roomclf.storage``)."""
    if storage.is_uri(path):
        return hashlib.sha1(storage.read_bytes(path)).hexdigest()
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def duplicate_paths(root: str | os.PathLike, train: list[str], valid: list[str], near: bool = True,
                    backbone: str = EMBEDDING_BACKBONE) -> list[str]:
    """Validation photos that duplicate a training photo: the same bytes, or (``near``) the
    same picture by embedding similarity (the embeddings propagation uses, whatever network is trained:
    the similarity threshold was set on them, and they are cached)."""
    root = storage.resolve(root)
    seen = {_digest(storage.join(root, p)) for p in train}
    dup = {p for p in valid if _digest(storage.join(root, p)) in seen}
    if near:
        from roomclf.models.near_duplicates import near_duplicates

        train_set, valid_set = set(train), set(valid)
        for a, b, _ in near_duplicates(root, list(train) + list(valid), backbone, progress=True):
            if a in valid_set and b in train_set:
                dup.add(a)
            elif b in valid_set and a in train_set:
                dup.add(b)
    return sorted(dup)


def drop_leaks(root: str | os.PathLike, data: TrainData, near: bool = True,
               backbone: str = EMBEDDING_BACKBONE) -> TrainData:
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

