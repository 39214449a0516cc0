"""PyTorch twin of the E2/E3 UNet of BENCH.md, for tests and benchmarks only.

Built from the same description as ``minigen.models.UNet`` (see its module docstring for the
layout and equations), with the same module and parameter names in the same order, so that
``copy_from_minigen`` / ``copy_to_minigen`` move weights between the two (through numpy) and
both compute the same function. Also the two timed workloads:

- ``e2_train_step``: one DDPM training step (Algorithm 1, ε-prediction MSE, Adam lr 2e-4) on
  a given batch x0 (N, 1, 28, 28), timesteps t (N,) and noise ε (N, 1, 28, 28):
      x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε,   loss = mean((ε − ε_θ(x_t, t))²)
  with the linear schedule β_t = linspace(1e-4, 0.02, T = 1000), ᾱ_t = Π_{s≤t} (1 − β_s);
- ``e3_forward``: ε_θ(x_t, t) without gradients.

PyTorch is never a dependency of minigen: only ``benchmarks/`` and tests import this file.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

E2_PRESET = dict(in_channels=1, out_channels=1, model_channels=32, channel_mult=(1, 2),
                 num_res_blocks=1, attention_levels=(), mid_attention=True, num_heads=1,
                 dropout=0.0, num_groups=8, num_classes=None)


def linear_alphas_cumprod(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """ᾱ_t (T,) of the linear schedule, computed in float64."""
    betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def timestep_embedding(t, dim: int, freqs):
    args = t.reshape(-1, 1) * freqs.reshape(1, -1)
    return torch.cat([args.sin(), args.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, ci, co, temb_dim, num_groups=8, dropout=0.0):
        super().__init__()
        self.out_channels = co
        self.norm1 = nn.GroupNorm(num_groups, ci)
        self.conv1 = nn.Conv2d(ci, co, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, co)
        self.norm2 = nn.GroupNorm(num_groups, co)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(co, co, 3, padding=1)
        self.skip = nn.Conv2d(ci, co, 1) if ci != co else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    def __init__(self, channels, num_heads=1, num_groups=8):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, hh, ww = x.shape
        heads, d = self.num_heads, c // self.num_heads
        qkv = self.qkv(self.norm(x)).reshape(n, 3, heads, d, hh * ww).permute(1, 0, 2, 4, 3)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return x + self.proj_out(out.permute(0, 1, 3, 2).reshape(n, c, hh, ww))


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Level(nn.Module):
    def __init__(self, blocks, resample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample

    def run_blocks(self, h, temb):
        for block in self.blocks:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
        return h


class MidBlock(nn.Module):
    def __init__(self, channels, temb_dim, attention, num_heads, num_groups, dropout):
        super().__init__()
        self.block1 = ResBlock(channels, channels, temb_dim, num_groups, dropout)
        self.attn = AttentionBlock(channels, num_heads, num_groups) if attention else None
        self.block2 = ResBlock(channels, channels, temb_dim, num_groups, dropout)

    def forward(self, h, temb):
        h = self.block1(h, temb)
        if self.attn is not None:
            h = self.attn(h)
        return self.block2(h, temb)


class TorchUNet(nn.Module):
    """Same arguments and layout as ``minigen.models.UNet``; ``TorchUNet(**E2_PRESET)`` is E2."""

    def __init__(self, in_channels=1, out_channels=None, model_channels=32, channel_mult=(1, 2),
                 num_res_blocks=1, attention_levels=(), mid_attention=True, num_heads=1,
                 dropout=0.0, num_groups=8, num_classes=None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.model_channels, self.num_classes = model_channels, num_classes
        temb_dim = 4 * model_channels
        half = model_channels // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float64) * (-math.log(10000.0) /
                                                                       (half - 1)))
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.register_buffer("freqs64", freqs, persistent=False)   # for .double()
        self.time_embed = nn.Sequential(nn.Linear(model_channels, temb_dim), nn.SiLU(),
                                        nn.Linear(temb_dim, temb_dim))
        if num_classes is not None:
            self.class_embed = nn.Embedding(num_classes + 1, temb_dim)
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)

        def blocks(ci, co, level):
            out = []
            for r in range(num_res_blocks):
                out.append(ResBlock(ci if r == 0 else co, co, temb_dim, num_groups, dropout))
                if level in attention_levels:
                    out.append(AttentionBlock(co, num_heads, num_groups))
            return out

        widths = [model_channels * m for m in channel_mult]
        self.down = nn.ModuleList()
        ch = model_channels
        for i, co in enumerate(widths):
            self.down.append(Level(blocks(ch, co, i), Downsample(co)))
            ch = co
        self.mid = MidBlock(ch, temb_dim, mid_attention, num_heads, num_groups, dropout)
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.up.append(Level(blocks(ch + widths[i], widths[i], i), Upsample(ch)))
            ch = widths[i]
        self.norm_out = nn.GroupNorm(num_groups, ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x, t, y=None):
        freqs = self.freqs64 if x.dtype == torch.float64 else self.freqs
        t = t.to(freqs.dtype)
        temb = self.time_embed(timestep_embedding(t, self.model_channels, freqs))
        if self.num_classes is not None:
            if y is None:
                y = torch.full((t.shape[0],), self.num_classes, dtype=torch.long,
                               device=t.device)
            temb = temb + self.class_embed(y)
        h = self.conv_in(x)
        skips = []
        for level in self.down:
            h = level.run_blocks(h, temb)
            skips.append(h)
            h = level.resample(h)
        h = self.mid(h, temb)
        for level in self.up:
            h = torch.cat([level.resample(h), skips.pop()], dim=1)
            h = level.run_blocks(h, temb)
        return self.conv_out(F.silu(self.norm_out(h)))


# ---------------------------------------------------------------------- weights both ways
def copy_from_minigen(torch_model: nn.Module, minigen_model) -> None:
    """Load the minigen model's state_dict (as numpy) into the torch model; names must match."""
    src = minigen_model.state_dict()
    dst = torch_model.state_dict()
    if list(src) != list(dst):
        missing = sorted(set(dst) - set(src))
        extra = sorted(set(src) - set(dst))
        raise KeyError(f"state_dict names differ: missing in minigen {missing}, "
                       f"extra in minigen {extra}" if missing or extra else
                       "state_dict names are the same but in a different order")
    state = {}
    for name, value in src.items():
        arr = np.array(value.numpy(), copy=True)
        if tuple(arr.shape) != tuple(dst[name].shape):
            raise ValueError(f"{name}: shape {arr.shape} vs {tuple(dst[name].shape)}")
        state[name] = torch.from_numpy(arr).to(dst[name].dtype)
    torch_model.load_state_dict(state)


def copy_to_minigen(minigen_model, torch_model: nn.Module) -> None:
    """Load the torch model's weights into the minigen model (numpy arrays by name)."""
    state = {k: v.detach().cpu().numpy().copy() for k, v in torch_model.state_dict().items()}
    minigen_model.load_state_dict(state)


# ---------------------------------------------------------------------- the timed workloads
class E2Step:
    """One E2 training step on fixed (x0, t, ε): zero_grad, q_sample, forward, MSE, backward,
    Adam. Call it; it returns the loss tensor."""

    def __init__(self, model: nn.Module, lr: float = 2e-4, T: int = 1000):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        ab = linear_alphas_cumprod(T)
        self.sqrt_ab = torch.from_numpy(np.sqrt(ab).astype(np.float32))
        self.sqrt_1mab = torch.from_numpy(np.sqrt(1.0 - ab).astype(np.float32))

    def loss(self, x0, t, noise):
        n = x0.shape[0]
        x_t = self.sqrt_ab[t].reshape(n, 1, 1, 1) * x0 + self.sqrt_1mab[t].reshape(n, 1, 1, 1) \
            * noise
        return F.mse_loss(self.model(x_t, t), noise)

    def __call__(self, x0, t, noise):
        self.opt.zero_grad()
        loss = self.loss(x0, t, noise)
        loss.backward()
        self.opt.step()
        return loss


def e3_forward(model: nn.Module, x_t, t, y=None):
    """E3: ε_θ(x_t, t) without gradients."""
    with torch.no_grad():
        return model(x_t, t, y)
