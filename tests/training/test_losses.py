from __future__ import annotations

import math

import pytest
import torch

from training import losses

REAL = [2.0, -1.0, 0.5]
FAKE = [-3.0, 0.0, 1.5]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("kind", ["minimax", "non-saturating"])
def test_d_loss_is_the_papers_cross_entropy(kind: str) -> None:
    # D maximises log D(x) + log(1 - D(G(z))): it minimises the negation.
    expected = _mean([-math.log(_sigmoid(r)) for r in REAL]) + _mean(
        [-math.log(1 - _sigmoid(f)) for f in FAKE]
    )
    value = losses.d_loss(kind, torch.tensor(REAL), torch.tensor(FAKE))  # type: ignore[arg-type]
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_minimax_g_loss_is_log_one_minus_d() -> None:
    expected = _mean([math.log(1 - _sigmoid(f)) for f in FAKE])
    assert losses.g_loss("minimax", torch.tensor(FAKE)).item() == pytest.approx(expected, rel=1e-6)


def test_non_saturating_g_loss_is_minus_log_d() -> None:
    expected = _mean([-math.log(_sigmoid(f)) for f in FAKE])
    value = losses.g_loss("non-saturating", torch.tensor(FAKE)).item()
    assert value == pytest.approx(expected, rel=1e-6)


def test_hinge_losses() -> None:
    # D: mean(max(0, 1 - r)) + mean(max(0, 1 + f)); G: -mean(f).
    expected_d = _mean([max(0.0, 1 - r) for r in REAL]) + _mean([max(0.0, 1 + f) for f in FAKE])
    assert losses.d_loss("hinge", torch.tensor(REAL), torch.tensor(FAKE)).item() == pytest.approx(
        expected_d, rel=1e-6
    )
    assert losses.g_loss("hinge", torch.tensor(FAKE)).item() == pytest.approx(-_mean(FAKE))


def test_hinge_d_loss_is_zero_beyond_the_margin() -> None:
    value = losses.d_loss("hinge", torch.tensor([1.0, 5.0]), torch.tensor([-1.0, -7.0]))
    assert value.item() == 0.0


def test_losses_stay_finite_for_extreme_logits() -> None:
    real, fake = torch.tensor([200.0, -200.0]), torch.tensor([-200.0, 200.0])
    for kind in ("minimax", "non-saturating", "hinge"):
        assert torch.isfinite(losses.d_loss(kind, real, fake))  # type: ignore[arg-type]
        assert torch.isfinite(losses.g_loss(kind, fake))  # type: ignore[arg-type]


def _g_grad(kind: str, logit: float) -> float:
    fake = torch.tensor([logit], requires_grad=True)
    losses.g_loss(kind, fake).backward()  # type: ignore[arg-type]
    assert fake.grad is not None
    return float(fake.grad)


@pytest.mark.parametrize("kind", ["minimax", "non-saturating", "hinge"])
def test_every_generator_loss_pushes_fake_logits_up(kind: str) -> None:
    for logit in (-5.0, 0.0, 3.0):
        assert _g_grad(kind, logit) < 0  # descending the loss raises D(G(z))


def test_non_saturating_gradient_is_strong_where_minimax_saturates() -> None:
    # The paper, section 3: early on D rejects samples confidently (very negative logits) and
    # log(1 - D(G(z))) saturates; -log D(G(z)) gives strong gradients instead.
    minimax, non_saturating = _g_grad("minimax", -10.0), _g_grad("non-saturating", -10.0)
    assert minimax == pytest.approx(-_sigmoid(-10.0), rel=1e-4)  # d/df log(1 - s(f)) = -s(f)
    assert non_saturating == pytest.approx(-(1 - _sigmoid(-10.0)), rel=1e-4)
    assert abs(non_saturating) > 1000 * abs(minimax)


def test_r1_penalty_is_the_squared_input_gradient_and_trains_d() -> None:
    # For a linear D the gradient wrt every input is its weight vector.
    w = torch.tensor([3.0, -4.0], requires_grad=True)
    x = torch.randn(5, 2, requires_grad=True)
    penalty = losses.r1_penalty(x @ w, x)
    assert penalty.item() == pytest.approx(25.0)
    penalty.backward()  # create_graph: the penalty's own gradient reaches D's weights
    assert torch.allclose(w.grad, 2 * w.detach())
