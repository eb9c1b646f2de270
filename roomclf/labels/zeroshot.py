"""Zero-shot room suggestions from an ImageNet classifier (the cold start: no model trained yet).

Each room owns a few ImageNet concepts (a stove says kitchen, a four-poster says
bedroom); a photo's room score is the sum of the ImageNet probabilities of the
room's concepts, and the room probabilities are those scores normalised.

``SEED_MAPPING`` is the mapping a person would write down by hand.
``DEFAULT_MAPPING`` was chosen by measurement: ``fit_mapping`` starts from the
seed and greedily adds, moves or drops the concept that most improves accuracy
on labelled photos, until nothing helps. It was fitted on batch_02 + batch_03 of
the shared corpus with efficientnet_lite0 and is reported on batch_01, which it
never saw (``bench/bench_zeroshot.py`` measures both and checks that a refit gives this mapping:
docs/benchmarks.md, zero-shot prelabel).
"""
from __future__ import annotations

import numpy as np

from roomclf.taxonomy import CLASSES

SEED_MAPPING: dict[str, tuple[str, ...]] = {
    "kitchen": ("refrigerator", "stove", "dishwasher", "microwave"),
    "bathroom": ("bathtub", "shower curtain", "toilet seat", "washbasin"),
    "bedroom": ("four-poster", "quilt"),
    "dining_room": ("dining table",),
    "living_room": ("studio couch", "home theater", "entertainment center"),
    "exterior": ("patio", "picket fence"),
    "interior": ("washer", "bannister"),
}

# fit_mapping(SEED_MAPPING) on batch_02 + batch_03 (efficientnet_lite0, min_mass=0.005)
DEFAULT_MAPPING: dict[str, tuple[str, ...]] = {
    "kitchen": ("dishwasher", "file", "microwave", "refrigerator", "stove", "tobacco shop"),
    "bathroom": ("bathtub", "medicine chest", "shower curtain", "toilet seat", "washbasin"),
    "bedroom": ("four-poster", "mosquito net", "quilt"),
    "dining_room": ("cinema", "dining table", "folding chair"),
    "living_room": ("fire screen", "home theater"),
    "exterior": ("boathouse", "mobile home", "picket fence", "solar dish", "lakeside"),
    "interior": ("bannister", "barber chair", "throne", "wardrobe", "washer"),
}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def assignment(mapping: dict[str, tuple[str, ...] | list[str]], names: list[str]) -> np.ndarray:
    """A len(names) x len(CLASSES) 0/1 matrix: which room each ImageNet concept votes for."""
    index = {n: i for i, n in enumerate(names)}
    m = np.zeros((len(names), len(CLASSES)), np.float32)
    for room, concepts in mapping.items():
        for concept in concepts:
            if concept not in index:
                raise KeyError(f"{concept!r} is not an ImageNet class name")
            m[index[concept], CLASSES.index(room)] = 1.0
    return m


def room_probs(imagenet_probs: np.ndarray, names: list[str],
               mapping: dict[str, tuple[str, ...]] | None = None) -> np.ndarray:
    """N x 1000 ImageNet probabilities -> N x 7 room probabilities (in CLASSES order)."""
    scores = imagenet_probs @ assignment(mapping or DEFAULT_MAPPING, names)
    total = scores.sum(axis=1, keepdims=True)
    uniform = np.full_like(scores, 1.0 / len(CLASSES))
    return np.where(total > 0, scores / np.maximum(total, 1e-12), uniform)


def accuracy(imagenet_probs: np.ndarray, labels: list[str] | np.ndarray, names: list[str],
             mapping: dict[str, tuple[str, ...]] | None = None) -> float:
    """Share of photos whose top room is the label (photos with an empty label are ignored)."""
    labels = np.asarray(labels)
    known = labels != ""
    if not known.any():
        return float("nan")
    pred = np.asarray(CLASSES)[room_probs(imagenet_probs, names, mapping).argmax(axis=1)]
    return float((pred[known] == labels[known]).mean())


def fit_mapping(imagenet_probs: np.ndarray, labels: list[str] | np.ndarray, names: list[str],
                start: dict[str, tuple[str, ...]] | None = None, min_mass: float = 0.005,
                max_steps: int = 40) -> tuple[dict[str, tuple[str, ...]], float]:
    """Greedy search for the concept -> room mapping with the best accuracy on labelled photos.

    Candidates are the ImageNet concepts whose mean probability over some room's photos
    reaches ``min_mass``, plus the starting ones. Each step tries, for every candidate, to
    put it in the room whose photos show it most (or its starting room) or to take it out;
    it keeps the single change that helps most, and stops when none helps.
    Returns the mapping and its accuracy on these photos.
    """
    labels = np.asarray(labels)
    known = labels != ""
    probs, labels = imagenet_probs[known], labels[known]
    y = np.array([CLASSES.index(lab) for lab in labels])
    room_means = np.stack([probs[y == r].mean(axis=0) if (y == r).any() else np.zeros(probs.shape[1])
                           for r in range(len(CLASSES))])
    candidates = np.where(room_means.max(axis=0) >= min_mass)[0]
    start_m = assignment(start or SEED_MAPPING, names)
    candidates = np.union1d(candidates, np.where(start_m.sum(axis=1) > 0)[0])
    current = start_m.copy()

    scores = probs @ current
    best = float((scores.argmax(axis=1) == y).mean())
    for _ in range(max_steps):
        step = None
        for concept in candidates:
            col = probs[:, concept:concept + 1]
            without = scores - col * current[concept]
            for room in (None, int(room_means[:, concept].argmax()), *np.where(start_m[concept] > 0)[0]):
                row = np.zeros(len(CLASSES), np.float32)
                if room is not None:
                    row[room] = 1.0
                if np.array_equal(row, current[concept]):
                    continue
                s = float(((without + col * row).argmax(axis=1) == y).mean())
                if s > best + 1e-9 and (step is None or s > step[0]):
                    step = (s, concept, row)
        if step is None:
            break
        best, concept, row = step
        scores = scores - probs[:, concept:concept + 1] * (current[concept] - row)
        current[concept] = row
    mapping = {room: tuple(names[i] for i in np.where(current[:, r] > 0)[0])
               for r, room in enumerate(CLASSES)}
    return mapping, best
