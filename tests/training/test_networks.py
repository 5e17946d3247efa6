from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from training import networks
from training.networks import Maxout

SHAPE = (1, 28, 28)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _nets(name: str, conditional: bool, shape: tuple[int, int, int] = SHAPE, classes: int = 10):  # type: ignore[no-untyped-def]
    cfg = tiny_config(name, conditional=conditional)
    g, d = networks.build(cfg, shape, classes)
    return cfg, g.eval(), d.eval()


def _call(net: torch.nn.Module, x: torch.Tensor, conditional: bool) -> torch.Tensor:
    return net(x, torch.arange(len(x)) % 10) if conditional else net(x)


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"], ids=["paper-mlp", "dcgan"])
def test_generator_and_discriminator_follow_the_graph_contract(
    name: str, conditional: bool
) -> None:
    cfg, g, d = _nets(name, conditional)
    z = torch.randn(5, cfg.latent_dim)
    with torch.no_grad():
        images = _call(g, z, conditional)
        logits = _call(d, images, conditional)
    assert images.shape == (5, *SHAPE)
    assert images.dtype == torch.float32
    lo, hi = cfg.output_range
    assert images.min() >= lo and images.max() <= hi
    assert logits.shape == (5, 1)
    assert torch.isfinite(logits).all()
    assert (g.embed is not None) == conditional
    assert (d.embed is not None) == conditional


def test_paper_generator_is_sigmoid_and_dcgan_is_tanh() -> None:
    z = torch.randn(64, 8) * 50  # saturate the output non-linearity
    _, paper_g, _ = _nets("tiny-gan", False)
    _, dcgan_g, _ = _nets("tiny-cgan", False)
    with torch.no_grad():
        paper, dcgan = paper_g(z), dcgan_g(z)
    assert paper.min() >= 0 and paper.max() <= 1
    assert dcgan.min() >= -1 and dcgan.max() <= 1
    assert dcgan.min() < -0.01 and dcgan.max() > 0.01  # tanh reaches both signs


@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"], ids=["paper-mlp", "dcgan"])
def test_conditional_networks_require_a_label(name: str) -> None:
    cfg, g, d = _nets(name, True)
    with pytest.raises(ValueError, match="conditional generator needs a label"):
        g(torch.randn(2, cfg.latent_dim))
    with pytest.raises(ValueError, match="conditional discriminator needs a label"):
        d(torch.rand(2, *SHAPE))


@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"], ids=["paper-mlp", "dcgan"])
def test_labels_change_the_conditional_outputs(name: str) -> None:
    cfg, g, d = _nets(name, True)
    z = torch.randn(1, cfg.latent_dim).repeat(10, 1)
    labels = torch.arange(10)
    with torch.no_grad():
        images = g(z, labels)
        same = g(z, labels)
        logits = d(images[:1].repeat(10, 1, 1, 1), labels)
    torch.testing.assert_close(images, same)  # deterministic in eval mode
    # One z, ten classes: ten different images, and D scores one image differently per class.
    assert len({images[i].numpy().tobytes() for i in range(10)}) == 10
    assert len({round(float(v), 9) for v in logits.flatten()}) == 10


def test_unconditional_build_ignores_the_class_count() -> None:
    cfg = tiny_config("tiny-cgan", conditional=False)
    g, d = networks.build(cfg, SHAPE, 10)
    assert g.embed is None and d.embed is None
    assert g.num_classes == 0


def test_paper_discriminator_uses_dropout_in_training_only() -> None:
    _, _, d = _nets("tiny-gan", False)
    x = torch.rand(8, *SHAPE)
    with torch.no_grad():
        assert torch.equal(d(x), d(x))
        d.train()
        assert not torch.equal(d(x), d(x))


def test_maxout_is_the_max_over_pieces_of_linear_units() -> None:
    layer = Maxout(in_features=3, out_features=2, pieces=4)
    x = torch.randn(5, 3)
    w, b = layer.linear.weight, layer.linear.bias  # [out * pieces, in], [out * pieces]
    expected = torch.empty(5, 2)
    for unit in range(2):
        rows = range(unit * 4, unit * 4 + 4)
        pieces = torch.stack([x @ w[r] + b[r] for r in rows], dim=1)  # [N, pieces]
        expected[:, unit] = pieces.max(dim=1).values
    with torch.no_grad():
        out = layer(x)
    assert out.shape == (5, 2)
    torch.testing.assert_close(out, expected.detach())


def test_maxout_with_one_piece_is_linear() -> None:
    layer = Maxout(4, 3, pieces=1)
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer(x), layer.linear(x))


def test_dcgan_refuses_sizes_not_divisible_by_4() -> None:
    cfg = tiny_config("tiny-cgan")
    with pytest.raises(ValueError, match="divisible by 4"):
        networks.check_shape(cfg, (1, 30, 30))
    with pytest.raises(ValueError, match="divisible by 4"):
        networks.build(cfg, (1, 28, 30), 10)
    networks.check_shape(cfg, (3, 32, 32))  # fine


@pytest.mark.parametrize("name", ["tiny-gan", "tiny-cgan"], ids=["paper-mlp", "dcgan"])
def test_other_image_shapes_are_honoured(name: str) -> None:
    shape = (3, 32, 32) if name == "tiny-cgan" else (1, 30, 30)  # the MLP takes any size
    cfg, g, d = _nets(name, True, shape=shape, classes=4)
    labels = torch.tensor([0, 3])
    with torch.no_grad():
        images = g(torch.randn(2, cfg.latent_dim), labels)
        assert images.shape == (2, *shape)
        assert d(images, labels).shape == (2, 1)
