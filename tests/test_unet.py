"""The diffusion UNet (minigen.models.UNet): shapes over configs, the E2 preset's size and
layout, equality with the PyTorch twin (benchmarks/torch_unet.py) with copied weights (forward
and parameter gradients), gradient flow, class conditioning with the null class, a few Adam
steps of E2 lowering the loss, and the state_dict round trip through minigen.save/load."""
import math
import os
import sys

import numpy as np
import pytest

import minigen as mg
from minigen.models import UNet
from minigen.models.unet import timestep_embedding

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))

# a small but complete config: 2 levels, 2 ResBlocks per level, attention at level 1 with 2
# heads, class conditioning, skip 1×1 convs (8 → 16) and concat widths that differ per level
SMALL = dict(in_channels=2, out_channels=3, model_channels=8, channel_mult=(1, 2),
             num_res_blocks=2, attention_levels=(1,), mid_attention=True, num_heads=2,
             num_groups=4, num_classes=5)


def seeded(seed=0, **config):
    return UNet(**config, generator=mg.Generator().manual_seed(seed))


def inputs(n, c, hw, classes=None, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = mg.tensor(rng.standard_normal((n, c, hw, hw)).astype(dtype))
    t = mg.tensor(rng.integers(0, 1000, size=n))
    y = mg.tensor(rng.integers(0, classes, size=n)) if classes else None
    return x, t, y


@pytest.mark.parametrize("config, hw", [
    (dict(), 28),                                                         # E2 defaults
    (dict(in_channels=3, model_channels=8, channel_mult=(1, 2, 2), num_groups=4), 16),
    (dict(model_channels=8, channel_mult=(1,), num_res_blocks=3, attention_levels=(0,),
          mid_attention=False, num_groups=2, dropout=0.1), 8),
    (SMALL, 12),
])
def test_output_shape(config, hw):
    model = seeded(**config)
    c_in = config.get("in_channels", 1)
    x, t, y = inputs(2, c_in, hw, config.get("num_classes"))
    out = model(x, t, y)
    assert out.shape == (2, config.get("out_channels", c_in), hw, hw)
    assert out.dtype == mg.float32
    assert np.isfinite(out.detach().numpy()).all()


def test_e2_preset_matches_bench_description():
    model = UNet.e2()
    n = model.num_parameters()
    print(f"E2 UNet parameters: {n}")
    assert n == 583_713     # BENCH.md: "~0.58M"
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expect = {
        "time_embed.0.weight": (128, 32), "time_embed.2.weight": (128, 128),
        "conv_in.weight": (32, 1, 3, 3),
        "down.0.blocks.0.conv1.weight": (32, 32, 3, 3),          # ResBlock(32→32) at 28×28
        "down.0.blocks.0.time_proj.weight": (32, 128),
        "down.0.resample.conv.weight": (32, 32, 3, 3),           # conv3×3 stride 2
        "down.1.blocks.0.conv1.weight": (64, 32, 3, 3),          # ResBlock(32→64) at 14×14
        "down.1.blocks.0.skip.weight": (64, 32, 1, 1),
        "down.1.resample.conv.weight": (64, 64, 3, 3),
        "mid.block1.conv1.weight": (64, 64, 3, 3),
        "mid.attn.qkv.weight": (192, 64, 1, 1), "mid.attn.proj_out.weight": (64, 64, 1, 1),
        "mid.block2.conv2.weight": (64, 64, 3, 3),
        "up.0.resample.conv.weight": (64, 64, 3, 3),             # upsample + conv 64→64
        "up.0.blocks.0.conv1.weight": (64, 128, 3, 3),           # ResBlock(128→64)
        "up.1.resample.conv.weight": (64, 64, 3, 3),
        "up.1.blocks.0.conv1.weight": (32, 96, 3, 3),            # ResBlock(96→32)
        "norm_out.weight": (32,), "conv_out.weight": (1, 32, 3, 3),
    }
    for k, v in expect.items():
        assert shapes[k] == v, k
    assert len([k for k in shapes if k.endswith(".norm1.weight")]) == 6      # six ResBlocks
    assert len([k for k in shapes if "attn" in k or "blocks.1" in k]) == 6   # one attention
    assert UNet.from_preset("e2", num_classes=10).num_parameters() == n + 11 * 128


def test_timestep_embedding_formula():
    t = mg.tensor([0.0, 1.0, 17.0, 999.0], dtype=mg.float64)
    e = timestep_embedding(t, 8).detach().numpy()
    w = np.exp(-math.log(10000.0) * np.arange(4) / 3)
    tt = t.detach().numpy()
    ref = np.concatenate([np.sin(np.outer(tt, w)), np.cos(np.outer(tt, w))], 1)
    np.testing.assert_allclose(e, ref, rtol=1e-12, atol=1e-12)


def _torch_twin(model, config, double=False):
    torch = pytest.importorskip("torch")
    from torch_unet import TorchUNet, copy_from_minigen
    twin = TorchUNet(**config)
    if double:
        twin = twin.double()
    copy_from_minigen(twin, model)
    return torch, twin


def test_matches_torch_twin_float64_forward_and_grads():
    model = seeded(**SMALL, dtype=mg.float64)
    torch, twin = _torch_twin(model, SMALL, double=True)
    x, t, y = inputs(3, 2, 12, 5, dtype=np.float64)
    out = model(x, t, y)
    tout = twin(torch.from_numpy(x.detach().numpy()), torch.from_numpy(t.detach().numpy()),
                torch.from_numpy(y.detach().numpy()))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    # the same scalar loss → the same parameter gradients
    g = np.random.default_rng(1).standard_normal(out.shape)
    (out * mg.tensor(g)).sum().backward()
    (tout * torch.from_numpy(g)).sum().backward()
    tgrads = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tgrads[name].grad.numpy(), rtol=1e-8,
                                   atol=1e-10, err_msg=name)


def test_e2_matches_torch_twin_float32():
    model = UNet.e2(generator=mg.Generator().manual_seed(0))
    torch, twin = _torch_twin(model, model.config)
    x, t, _ = inputs(4, 1, 28)
    out = model(x, t).detach().numpy()
    with torch.no_grad():
        tout = twin(torch.from_numpy(x.numpy()), torch.from_numpy(t.numpy())).numpy()
    scale = np.abs(tout).max()
    np.testing.assert_allclose(out, tout, rtol=0, atol=2e-5 * scale)
    # and back: torch weights into a differently seeded minigen model give the same output
    from torch_unet import copy_to_minigen
    other = UNet.e2(generator=mg.Generator().manual_seed(1))
    copy_to_minigen(other, twin)
    np.testing.assert_array_equal(other(x, t).detach().numpy(), out)


def test_gradients_reach_every_parameter():
    model = seeded(**SMALL)
    x, t, y = inputs(2, 2, 8, 5)
    model(x, t, y).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        g = p.grad.detach().numpy()
        assert np.isfinite(g).all(), name
        if name == "class_embed.weight":    # only the rows of the classes in y
            used = np.unique(y.detach().numpy())
            assert np.abs(g[used]).sum(1).min() > 0
            assert np.abs(np.delete(g, used, 0)).sum() == 0
        else:
            assert np.abs(g).max() > 0, name


def test_class_conditioning_and_null_class():
    model = seeded(**SMALL)
    x, t, _ = inputs(2, 2, 8)
    y_a, y_b = mg.tensor([0, 1]), mg.tensor([2, 1])
    out_a, out_b = model(x, t, y_a).detach().numpy(), model(x, t, y_b).detach().numpy()
    assert not np.allclose(out_a[0], out_b[0])          # the label changes the prediction
    np.testing.assert_array_equal(out_a[1], out_b[1])   # per sample
    null = mg.tensor([5, 5])                            # y=None is the null class index K
    np.testing.assert_array_equal(model(x, t).detach().numpy(), model(x, t, null).detach().numpy())
    model.zero_grad()
    model(x, t).sum().backward()
    g = model.class_embed.weight.grad.detach().numpy()
    assert np.abs(g[5]).sum() > 0 and np.abs(g[:5]).sum() == 0   # the null row learns
    with pytest.raises(ValueError, match="no class conditioning"):
        seeded(model_channels=8, num_groups=4)(x[:, :1], t, y_a)


def test_bad_inputs_raise_clear_errors():
    model = seeded(model_channels=8, num_groups=4)
    x, t, _ = inputs(2, 1, 8)
    with pytest.raises(ValueError, match="divisible by 2\\^levels"):
        model(inputs(2, 1, 10)[0], t)
    with pytest.raises(ValueError, match=r"x must be \(N, 1, H, W\)"):
        model(inputs(2, 3, 8)[0], t)
    with pytest.raises(ValueError, match="t must be"):
        model(x, mg.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unknown preset"):
        UNet.from_preset("e9")
    with pytest.raises(ValueError, match="attention_levels"):
        UNet(channel_mult=(1, 2), attention_levels=(2,))


def test_e2_adam_steps_lower_the_loss():
    """E2 preset, its Adam lr 2e-4, ε-prediction MSE on a fixed tiny batch (x0, t, ε)."""
    model = UNet.e2(generator=mg.Generator().manual_seed(0))
    opt = mg.optim.Adam(model.parameters(), lr=2e-4)
    rng = np.random.default_rng(0)
    n = 2
    x0 = (rng.random((n, 1, 28, 28)) > 0.7).astype(np.float32) * 2 - 1
    t = rng.integers(0, 1000, size=n)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t].reshape(n, 1, 1, 1)
    x_t = mg.tensor((np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps).astype(np.float32))
    t, eps = mg.tensor(t), mg.tensor(eps)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = mg.nn.functional.mse_loss(model(x_t, t), eps)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print("E2 losses over 6 Adam steps:", losses)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_state_dict_round_trip(tmp_path):
    model = seeded(**SMALL)
    path = tmp_path / "unet.safetensors"
    mg.save(model.state_dict(), str(path))
    other = seeded(seed=7, **SMALL)
    x, t, y = inputs(2, 2, 8, 5)
    assert not np.array_equal(model(x, t, y).detach().numpy(), other(x, t, y).detach().numpy())
    other.load_state_dict(mg.load(str(path)))
    np.testing.assert_array_equal(model(x, t, y).detach().numpy(), other(x, t, y).detach().numpy())
    assert "freqs" not in model.state_dict()        # a derived buffer, not saved


def test_upsample_nearest2x_matches_interpolate():
    # the Upsample block's F.interpolate(scale_factor=2) takes the integer-factor fast path:
    # y = each pixel repeated 2×2, ∂x = the sum of its 2×2 block of g
    x0 = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    x = mg.tensor(x0, requires_grad=True)
    b = mg.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    np.testing.assert_array_equal(b.detach().numpy(), x0.repeat(2, axis=2).repeat(2, axis=3))
    g = np.random.default_rng(1).standard_normal(b.shape)
    gb, = mg.autograd.grad(b, [x], mg.tensor(g))
    np.testing.assert_allclose(gb.numpy(), g.reshape(2, 3, 4, 2, 5, 2).sum((3, 5)), rtol=1e-12,
                               atol=1e-12)
