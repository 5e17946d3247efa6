from __future__ import annotations

import torch

from training.augment import translate


def _shifted(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    out = torch.full_like(x, fill)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_each_image_is_shifted_by_its_own_offset_and_filled_with_the_background() -> None:
    x = torch.rand(64, 2, 7, 9)
    y = translate(x, 2, -1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    offsets = set()
    for xi, yi in zip(x, y, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(yi, _shifted(xi, dy, dx, -1.0))
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 10  # per image, not one shift for the batch


def test_translate_is_seeded_differentiable_and_a_no_op_at_zero() -> None:
    x = torch.rand(8, 1, 6, 6, requires_grad=True)
    a = translate(x, 1, 0.0, torch.Generator().manual_seed(3))
    b = translate(x, 1, 0.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and set(x.grad.unique().tolist()) <= {0.0, 1.0}
    assert translate(x, 0, 0.0, torch.Generator()) is x
