"""A trained network's outputs: class probabilities of a Learner's DataLoaders (plain and with flip
TTA, as the exported model computes them) and the pooled features of photos.
"""
from __future__ import annotations

import os

import numpy as np

from roomclf import storage
from roomclf.taxonomy import CLASSES
from roomclf.train.config import TrainingError


def loader_passes(learn, dl, mirrored: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(probabilities N x 7 of the photos, of their mirror images or None without ``mirrored``, true class
    indices N) of a labelled DataLoader through ``learn.model`` in eval mode: each batch is decoded once. The
    class targets are a batch's last element (multi-task batches carry attribute targets before them)."""
    import torch

    model = learn.model.eval()
    plain, mirror, targets = [], [], []
    with torch.inference_mode():
        for batch in dl:
            xb, yb = batch[0], batch[-1]
            plain.append(torch.softmax(model(xb).float(), dim=1).cpu().numpy())
            if mirrored:
                mirror.append(torch.softmax(model(torch.flip(xb, dims=[3])).float(), dim=1).cpu().numpy())
            yb = yb.cpu().numpy()
            targets.append(yb.argmax(1) if yb.ndim == 2 else yb)     # distillation: one-hot validation targets
    return (np.concatenate(plain), np.concatenate(mirror) if mirrored else None,
            np.concatenate(targets).astype(int))


def loader_probs(learn, dl, flip_tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities N x 7, true class indices N) of a labelled DataLoader; with ``flip_tta`` the mean over
    each photo and its mirror image, as the exported model computes them."""
    plain, mirror, y = loader_passes(learn, dl, mirrored=flip_tta)
    return ((plain + mirror) / 2 if flip_tta else plain), y


def predict(learn, flip_tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``loader_probs`` on the validation set (no augmentation), in the taxonomy's class order."""
    vocab = getattr(learn.dls.train_ds, "vocab", None)      # none with distribution targets (taxonomy order)
    if vocab is not None and list(vocab) != list(CLASSES):
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
            x = torch.from_numpy(np.stack([model_input(storage.join(root, p), size) for p in paths[i:i + batch_size]]))
            out.append(net.features(normalize(x)).numpy())
    return np.concatenate(out) if out else np.zeros((0, spec.feature_dim), np.float32)
