"""The room network and its exported form.

``RoomNet`` = a backbone body (from the backbone registry) + pooling + a small
class head; it takes *normalised* images and returns class logits, which is
what fastai trains. The pooling of the last feature map is decided here, once
(``POOLINGS``, ``pooling_layer``): ``avg`` (the backbone's own), ``max`` or
``gem`` (generalized mean with a learnable exponent), so training, the
exported graph and the features the attribute heads read cannot disagree.
``AttributeHead`` maps the same pooled features to one
logit per taxonomy attribute key; a ``RoomNet`` built ``with_attributes``
carries one (``attribute_head``) that learns beside the class head
(multi-task fine-tuning, ``roomclf.train.multitask``). ``ExportNet`` wraps both for deployment:
plain [0, 1] RGB in; normalisation, softmax and sigmoid baked in; outputs
``probs`` (N x 7), ``attributes`` (N x len(ATTRIBUTE_KEYS)) and ``embedding``
(N x D, L2-normalised). Every consumer (infer-all, serving, prelabel) feeds the
output of ``roomclf.photos.model_input``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roomclf.models.backbones import (
    BackboneError,
    build_backbone,
    get_spec,
    normalizer,
    split_backbone,
)
from roomclf.taxonomy import ATTRIBUTE_KEYS, CLASSES

POOLINGS = ("avg", "max", "gem")
GEM_INITIAL_P = 3.0


class GeM(nn.Module):
    """Generalized-mean pooling: (mean of x^p over the map)^(1/p) per channel, p learnt (kept >= 1:
    p = 1 is the average, a large p tends to the maximum, so a small bright object is not averaged away)."""

    def __init__(self, p: float = GEM_INITIAL_P, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return fmap.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def pooling_layer(kind: str) -> nn.Module:
    """N x C x H x W feature maps -> N x C vectors, for a ``POOLINGS`` name."""
    if kind == "avg":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if kind == "max":
        return nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
    if kind == "gem":
        return GeM()
    raise BackboneError(f"unknown pooling {kind!r}; one of {', '.join(POOLINGS)}")


class RoomNet(nn.Module):
    def __init__(self, backbone: str, n_classes: int = len(CLASSES), pretrained: bool = True,
                 dropout: float = 0.2, pooling: str = "avg", with_attributes: bool = False):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        spec = get_spec(backbone)
        body, _, _ = split_backbone(backbone, build_backbone(backbone, pretrained))
        self.body, self.pool = body, pooling_layer(pooling)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(spec.feature_dim, n_classes))
        self.attribute_head = AttributeHead(spec.feature_dim) if with_attributes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> pooled penultimate features (not L2-normalised)."""
        return self.pool(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class AttributeHead(nn.Module):
    """One logit per attribute key, from the pooled features."""

    def __init__(self, feature_dim: int, n_keys: int = len(ATTRIBUTE_KEYS)):
        super().__init__()
        self.linear = nn.Linear(feature_dim, n_keys)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear(feats)


class ExportNet(nn.Module):
    """[0, 1] RGB -> (probs, attributes, embedding), everything baked in.

    ``flip_tta``: class probabilities are the mean over the photo and its mirror image (one body pass
    over both); attributes and embedding stay those of the photo itself (their thresholds and
    neighbours were fitted on it)."""

    def __init__(self, net: RoomNet, attribute_head: AttributeHead | None = None, flip_tta: bool = False):
        super().__init__()
        spec = get_spec(net.backbone)
        self.net = net
        self.attribute_head = attribute_head
        self.flip_tta = flip_tta
        self.n_keys = len(ATTRIBUTE_KEYS)
        self.normalize = normalizer(spec)

    def forward(self, image: torch.Tensor):
        x = self.normalize(image)
        if self.flip_tta:
            both = self.net.features(torch.cat([x, torch.flip(x, dims=[3])]))
            feats, mirrored = both[: x.shape[0]], both[x.shape[0]:]
            probs = (torch.softmax(self.net.head(feats), dim=1) + torch.softmax(self.net.head(mirrored), dim=1)) / 2
        else:
            feats = self.net.features(x)
            probs = torch.softmax(self.net.head(feats), dim=1)
        if self.attribute_head is not None:
            attrs = torch.sigmoid(self.attribute_head(feats))
        else:
            attrs = feats[:, :1].mul(0).expand(-1, self.n_keys)
        return probs, attrs, F.normalize(feats, dim=1)
