"""Generators and discriminators: the 2014 paper's MLPs and DCGAN, each optionally conditional.

Every generator maps ``z`` [N, latent_dim] (and ``label`` [N] when conditional) to images
[N, C, H, W] in the config's output range; every discriminator maps images (and labels) to a
logit [N, 1]. These signatures are the ONNX graph contract of DESIGN.md.

Conditioning: G concatenates a learned label embedding to z (Mirza & Osindero, 2014);
D adds the projection term <embed(y), h> to its logit (Miyato & Koyama, 2018).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from training.config import TrainConfig


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al., 2013): the max over ``pieces`` linear pieces."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)  # [N, out * pieces]
        return y.view(x.shape[0], -1, self.pieces).amax(dim=2)  # [N, out]


def _uniform_init(module: nn.Module, irange: float) -> None:
    # pylearn2's `irange`: weights ~ U(-irange, irange), biases 0, as in the paper's release.
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            nn.init.zeros_(m.bias)


def _dcgan_init(module: nn.Module) -> None:
    # Radford et al. 2016: N(0, 0.02) weights, BN scale N(1, 0.02).
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (+ label embedding) -> body -> image. ``body`` decides the architecture."""

    def __init__(self, latent_dim: int, num_classes: int, label_dim: int, body: nn.Module) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, label_dim) if num_classes else None
        self.body = body

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            if label is None:
                raise ValueError("a conditional generator needs a label")
            z = torch.cat([z, self.embed(label)], dim=1)  # [N, latent + label_dim]
        return self.body(z)


class Discriminator(nn.Module):
    """features(image) -> h; logit = w.h + b (+ <embed(label), h> when conditional)."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.out = nn.Linear(feature_dim, 1)
        self.embed = nn.Embedding(num_classes, feature_dim) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, image: Tensor, label: Tensor | None = None) -> Tensor:
        h = self.features(image)  # [N, feature_dim]
        logit = self.out(h)  # [N, 1]
        if self.embed is not None:
            if label is None:
                raise ValueError("a conditional discriminator needs a label")
            logit = logit + (self.embed(label) * h).sum(dim=1, keepdim=True)
        return logit


def _mlp_generator(cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int) -> Generator:
    n = cfg.network
    in_dim = cfg.latent_dim + (n.label_dim if num_classes else 0)
    body = nn.Sequential(
        nn.Linear(in_dim, n.g_hidden),
        nn.ReLU(),
        nn.Linear(n.g_hidden, n.g_hidden),
        nn.ReLU(),
        nn.Linear(n.g_hidden, math.prod(shape)),
        nn.Sigmoid(),
        nn.Unflatten(1, shape),  # [N, C, H, W]
    )
    _uniform_init(body, 0.05)
    return Generator(cfg.latent_dim, num_classes, n.label_dim, body)


def _mlp_discriminator(
    cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int
) -> Discriminator:
    n = cfg.network
    features = nn.Sequential(
        nn.Flatten(),  # [N, C*H*W]
        nn.Dropout(n.d_input_dropout),
        Maxout(math.prod(shape), n.d_hidden, n.maxout_pieces),
        nn.Dropout(n.d_dropout),
        Maxout(n.d_hidden, n.d_hidden, n.maxout_pieces),
        nn.Dropout(n.d_dropout),
    )
    d = Discriminator(features, n.d_hidden, num_classes)
    _uniform_init(d.features, 0.005)
    _uniform_init(d.out, 0.005)
    return d


def _dcgan_generator(cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int) -> Generator:
    c, h, w = shape
    wd = cfg.network.width
    in_dim = cfg.latent_dim + (cfg.network.label_dim if num_classes else 0)
    body = nn.Sequential(
        nn.Linear(in_dim, 2 * wd * (h // 4) * (w // 4), bias=False),
        nn.Unflatten(1, (2 * wd, h // 4, w // 4)),  # [N, 2w, H/4, W/4]
        nn.BatchNorm2d(2 * wd),
        nn.ReLU(),
        nn.ConvTranspose2d(2 * wd, wd, 4, 2, 1, bias=False),  # [N, w, H/2, W/2]
        nn.BatchNorm2d(wd),
        nn.ReLU(),
        nn.ConvTranspose2d(wd, c, 4, 2, 1),  # [N, C, H, W]
        nn.Tanh(),
    )
    _dcgan_init(body)
    return Generator(cfg.latent_dim, num_classes, cfg.network.label_dim, body)


def _dcgan_discriminator(
    cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int
) -> Discriminator:
    c, h, w = shape
    wd = cfg.network.width
    features = nn.Sequential(
        nn.Conv2d(c, wd, 4, 2, 1),  # [N, w, H/2, W/2]
        nn.LeakyReLU(0.2),
        nn.Conv2d(wd, 2 * wd, 4, 2, 1),  # [N, 2w, H/4, W/4]
        nn.LeakyReLU(0.2),
        nn.Flatten(),  # [N, 2w * H/4 * W/4]
    )
    d = Discriminator(features, 2 * wd * (h // 4) * (w // 4), num_classes)
    _dcgan_init(d.features)
    _dcgan_init(d.out)
    return d


def check_shape(cfg: TrainConfig, shape: tuple[int, int, int]) -> None:
    if cfg.architecture == "dcgan" and (shape[1] % 4 or shape[2] % 4):
        raise ValueError(f"dcgan needs height and width divisible by 4, got {shape[1:]}")


def build(
    cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int
) -> tuple[Generator, Discriminator]:
    """G and D for a config, an image shape [C, H, W] and a class count (0: unconditional)."""
    check_shape(cfg, shape)
    classes = num_classes if cfg.conditional else 0
    if cfg.architecture == "paper-mlp":
        return _mlp_generator(cfg, shape, classes), _mlp_discriminator(cfg, shape, classes)
    return _dcgan_generator(cfg, shape, classes), _dcgan_discriminator(cfg, shape, classes)
