"""GAN losses on discriminator logits.

- ``minimax``: the value function of Goodfellow et al. 2014, eq. 1. D maximises
  log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z))), which saturates early on.
- ``non-saturating``: the same D; G maximises log D(G(z)) instead (the paper, section 3).
- ``hinge``: Lim & Ye 2017 / Miyato et al. 2018, the stable modern choice.

With D(x) = sigmoid(logit): -log D = softplus(-logit), -log(1 - D) = softplus(logit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from training.config import Loss


def d_loss(kind: Loss, real_logit: Tensor, fake_logit: Tensor) -> Tensor:
    """The discriminator's loss to minimise."""
    if kind == "hinge":
        return F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
    return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()


def g_loss(kind: Loss, fake_logit: Tensor) -> Tensor:
    """The generator's loss to minimise."""
    if kind == "minimax":
        return -F.softplus(fake_logit).mean()  # log(1 - D(G(z)))
    if kind == "non-saturating":
        return F.softplus(-fake_logit).mean()  # -log D(G(z))
    return -fake_logit.mean()


def r1_penalty(real_logit: Tensor, real: Tensor) -> Tensor:
    """E|grad_x D(x)|^2 over real images that require grad; the caller scales it by gamma/2."""
    (grad,) = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
