"""Distillation: a cheaper student learns the champion's soft predictions.

The teacher (any registered ONNX room model, by default the champion) predicts every readable photo of
the training batches, labelled or not: its room probabilities become the student's training targets
(softened by the recipe's ``temperature``), and its attribute scores the targets of the student's
attribute head, fitted afterwards on the student's own features (the teacher's thresholds then apply).
With the recipe's ``live_teacher`` the teacher also predicts every training batch as the student sees it
(``live_teacher_callback``): augmented and, with ``mixup``, mixed, so each target belongs to its picture.
Validation stays on human labels only, so the student is judged, registered and gated like any model.
Everything here takes data and returns data; ``roomclf.train.run`` wires it into a training run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf import storage
from roomclf.labels.sources import LabelSource
from roomclf.parallel import BATCH_PHOTOS
from roomclf.taxonomy import CLASSES
from roomclf.train.config import TrainingError
from roomclf.train.data import TrainData

TEACHER_SOURCE = LabelSource.TEACHER   # the origin of a training photo no person labelled


@dataclass
class Teacher:
    uri: str
    name: str                                        # e.g. "roomclf-onnx v3", or the file name
    version: str | None
    path: str | None = None                          # its local ONNX file
    probs: dict[str, np.ndarray] = field(default_factory=dict)        # path -> room probabilities
    attributes: dict[str, np.ndarray] = field(default_factory=dict)   # path -> attribute scores
    attribute_keys: list[str] = field(default_factory=list)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)              # photos it could not read


def teacher_outputs(uri: str, root: str | os.PathLike, paths: list[str], batch_size: int = BATCH_PHOTOS,
                    progress: bool = True) -> Teacher:
    """The teacher's room probabilities and attribute scores for ``paths`` (relative to ``root``)."""
    from tqdm.auto import tqdm

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import local_onnx, resolve

    ref = resolve(uri)
    model = OnnxModel(local_onnx(ref))         # one-thread session: run_sources runs a batch per core
    name = f"{ref.name} v{ref.version}" if ref.version else Path(str(ref.location)).name
    teacher = Teacher(uri, name, str(ref.version) if ref.version else None, str(model.path),
                      attribute_keys=list(model.attribute_keys), thresholds=dict(model.thresholds))
    with tqdm(total=len(paths), desc=f"teacher ({name})", unit="photo", disable=not progress) as bar:
        for idx, out, unreadable in model.run_sources([storage.join(root, p) for p in paths], batch_size):
            teacher.errors.update({paths[j]: exc.reason for j, exc in unreadable.items()})
            for k, j in enumerate(idx):
                teacher.probs[paths[j]] = out["probs"][k].astype(np.float32)
                if "attributes" in out:
                    teacher.attributes[paths[j]] = out["attributes"][k].astype(np.float32)
            bar.update(len(idx) + len(unreadable))
    if list(model.classes) != list(CLASSES):
        raise TrainingError(f"the teacher's classes {model.classes} are not the taxonomy's {list(CLASSES)}")
    return teacher


def with_teacher_targets(data: TrainData, teacher: Teacher, photos: list[str]) -> TrainData:
    """``data`` whose training set is every photo of ``photos`` the teacher read: labelled photos keep
    their label (for counts and reports), the others take the teacher's top class with origin
    ``teacher``; ``data.soft`` holds the teacher's probabilities of every training photo, ``data.teacher`` the
    teacher itself (its name, file and attribute scores)."""
    labelled = dict(data.train)
    valid = {p for p, _ in data.valid}
    train = []
    for p in photos:
        if p in teacher.probs and p not in valid:
            if p not in labelled:
                data.origin[p] = TEACHER_SOURCE
            train.append((p, labelled.get(p) or CLASSES[int(np.argmax(teacher.probs[p]))]))
    data.train = train
    data.soft = {p: teacher.probs[p] for p, _ in train}
    data.teacher = teacher
    return data


def soften(probs, temperature: float):
    """Probabilities at ``temperature``: p ** (1/T), renormalised (a softmax of the logits divided by T).
    Works on numpy arrays and torch tensors alike."""
    sharp = probs.clip(1e-8, None) ** (1.0 / temperature)
    return sharp / sharp.sum(-1, keepdims=True) if isinstance(sharp, np.ndarray) else sharp / sharp.sum(-1, keepdim=True)


class SoftTarget:
    """fastai ``get_y`` of a distillation item ``[path, label, probabilities]``: the probabilities."""

    def __call__(self, item):
        return np.asarray(item[2], dtype=np.float32)


def soft_target_loss(temperature: float):
    """Cross-entropy of the student's logits at ``temperature`` against the target distribution at the
    same temperature, times T² (Hinton et al.'s scaling, so gradients keep their size as T changes). On
    one-hot targets (the human-labelled validation photos) it is the plain cross-entropy, times T²."""
    import torch
    import torch.nn.functional as F

    class SoftTargetLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.temperature = float(temperature)

        def forward(self, logits, target):
            t = self.temperature
            return -(soften(target.float(), t) * F.log_softmax(logits.float() / t, dim=1)).sum(1).mean() * t * t

        def activation(self, x):
            return F.softmax(x, dim=1)

        def decodes(self, x):
            return x.argmax(dim=1)

    return SoftTargetLoss()


def soft_accuracy(logits, target):
    """Top-1 agreement of the logits with the target distribution's top class (for one-hot validation
    targets: the accuracy)."""
    return (logits.argmax(dim=1) == target.argmax(dim=1)).float().mean()


def live_teacher_callback(teacher_path: str | os.PathLike, mean, std, threads: int | None = None):
    """A fastai callback for consistent teaching: on every training batch the teacher (its ONNX file, a
    session of ``threads`` intra-op threads, default every core) predicts the very pictures the student
    is about to learn from, after augmentation and MixUp, and its probabilities replace the batch's targets.
    The precomputed targets belong to the plain photo; a flipped, warped or mixed picture's own prediction
    can differ from it. The student's batch (normalised with ``mean``/``std``) is brought back to [0, 1]
    and resized to the teacher's input size. Validation batches keep their human labels."""
    import torch
    import torch.nn.functional as F
    from fastai.callback.core import Callback
    from fastai.callback.mixup import MixUp

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.settings import cpus

    model = OnnxModel(teacher_path, threads=threads or cpus())
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)

    class LiveTeacher(Callback):
        order = MixUp.order + 1            # after MixUp has mixed the pictures (and their old targets)
        run_valid = False

        def before_batch(self):
            x = self.learn.xb[0].detach().float().cpu()
            pictures = (x * s + m).clamp(0, 1)
            if pictures.shape[-1] != model.input_size or pictures.shape[-2] != model.input_size:
                pictures = F.interpolate(pictures, size=(model.input_size, model.input_size), mode="bilinear",
                                         align_corners=False, antialias=pictures.shape[-1] > model.input_size)
            probs = model.run(np.ascontiguousarray(pictures.numpy(), dtype=np.float32))["probs"]
            self.learn.yb = (torch.from_numpy(probs.astype(np.float32)).to(self.learn.yb[0].device),)

    return LiveTeacher()


def distil_attributes(feats: np.ndarray, teacher: Teacher, paths: list[str], seed: int = 0, steps: int = 300):
    """An ``AttributeHead`` over the student's raw features ``feats`` (one row per path) fitted to the
    teacher's attribute scores (binary cross-entropy on soft targets) for the attributes the teacher
    emits; returns (head, thresholds), the teacher's thresholds, or None when the teacher emits none."""
    import torch

    from roomclf.models.network import AttributeHead

    trained = [i for i, k in enumerate(teacher.attribute_keys) if teacher.thresholds.get(k) is not None]
    have = [i for i, p in enumerate(paths) if p in teacher.attributes]
    if not trained or not have:
        return None
    torch.manual_seed(seed)
    x = torch.from_numpy(np.asarray(feats, np.float32)[have])
    y = torch.from_numpy(np.stack([teacher.attributes[paths[i]] for i in have]))
    mean, std = x.mean(0), x.std(0) + 1e-6
    head = AttributeHead(x.shape[1], len(teacher.attribute_keys))
    mask = torch.zeros(len(teacher.attribute_keys), dtype=torch.bool)
    mask[trained] = True
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    z = (x - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(z)[:, mask], y[:, mask])
        loss.backward()
        opt.step()
    with torch.no_grad():               # fold the standardisation into the linear layer
        w = head.linear.weight / std
        head.linear.bias -= (w * mean).sum(1)
        head.linear.weight.copy_(w)
    return head.eval(), {k: (teacher.thresholds.get(k) if i in trained else None)
                         for i, k in enumerate(teacher.attribute_keys)}
