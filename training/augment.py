"""Differentiable augmentation of the images D sees (DiffAugment, Zhao et al. 2020).

Applied to real and fake images alike, in D's and G's steps, so D judges augmented images
only and G is not pushed to produce shifted digits; it is what lets D train on a few thousand
images without memorising them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def translate(x: Tensor, max_shift: int, fill: float, gen: torch.Generator) -> Tensor:
    """Shift each image of [N, C, H, W] by its own (dy, dx) in [-max_shift, max_shift].

    Uncovered pixels take ``fill`` (the background). A gather, so gradients flow to ``x``.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2, n, 1, 1), generator=gen).to(x.device)
    padded = F.pad(x, (max_shift,) * 4, value=fill)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + max_shift - dy  # [N, H, 1]
    cols = torch.arange(w, device=x.device).view(1, 1, w) + max_shift - dx  # [N, 1, W]
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # Advanced indices around a slice put their broadcast shape first: [N, H, W, C].
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)
