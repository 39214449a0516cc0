"""The ε-prediction UNet of the diffusion models (MATH.md §6–8); workloads E2/E3 of BENCH.md.

ε_θ(x_t, t, y): an image x_t (N, C_in, H, W), its timestep t (N,) and optionally a class y (N,)
→ a prediction of the noise ε (N, C_out, H, W).

Layout (L = len(channel_mult) levels, c_i = model_channels · channel_mult[i], R = num_res_blocks):

    e   = Linear(4c → 4c)(SiLU(Linear(c → 4c)(sinusoid(t))))  [+ Embedding(y)]   (N, 4c)
    h   = conv3×3(x) → c channels
    for level i = 0..L−1 (resolution H/2^i):
        R × ResBlock(→ c_i)  (each followed by an AttentionBlock when i ∈ attention_levels)
        s_i = h                                       # one skip per level
        h = conv3×3 stride 2 (h)                      # channels kept, H/2^(i+1)
    middle (H/2^L): ResBlock, AttentionBlock (when mid_attention), ResBlock
    for level i = L−1..0:
        h = conv3×3(nearest-upsample×2(h))            # channels kept, H/2^i
        h = cat(h, s_i)                               # channels: ch + c_i
        R × ResBlock(→ c_i)  (and AttentionBlocks as on the way down)
    out = conv3×3(SiLU(GroupNorm(h))) → C_out channels

    ResBlock(x, e), ci → co:
        h = conv3×3(SiLU(GroupNorm(x)))  +  Linear(4c → co)(e)[:, :, None, None]
        h = conv3×3(Dropout(SiLU(GroupNorm(h))))
        out = skip(x) + h,  skip = 1×1 conv when ci ≠ co else identity
    AttentionBlock(x), C channels, n heads of d = C/n, over the L = H·W positions:
        q, k, v = split(conv1×1(GroupNorm(x)))  each (N, n, L, d)
        out = x + conv1×1(softmax(q kᵀ / √d) v)

The time embedding is the Transformer/DDPM sinusoid of width c (half = c/2):
    ω_j = exp(−ln(10000) · j / (half − 1)),  j = 0..half−1
    sinusoid(t) = [sin(t ω_0) … sin(t ω_{half−1}), cos(t ω_0) … cos(t ω_{half−1})].

Class conditioning (``num_classes`` = K): Embedding(K + 1, 4c) added to e; row K is the learned
null class ∅ used when y is None (and for the unconditional branch of classifier-free guidance).

On CUDA a forward makes no device→host transfer (``tests/test_host_sync.py``): t and y stay
on the device and the class embedding checks its labels only under ``minigen.debug_checks()``.

The E2 network of BENCH.md (~0.58M parameters, 1×28×28) is ``UNet.e2()``: c = 32, channel_mult
(1, 2), R = 1, attention only in the middle, one head, GroupNorm(8). Parameter names match the
PyTorch twin ``benchmarks/torch_unet.py`` so weights copy both ways.
"""
from __future__ import annotations

import inspect
import math

from .. import creation, dtypes, nn
from ..nn import functional as F
from ..ops.normalization import group_norm_silu
from ..ops.shape import cat

__all__ = ["UNet", "ResBlock", "AttentionBlock", "timestep_embedding"]

# The named presets: constructor arguments (E2/E3 of BENCH.md).
def _norm_silu(norm, x):
    """F.silu(norm(x)) for an nn.GroupNorm ``norm``, as one fused primitive (same values)."""
    return group_norm_silu(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


PRESETS = {
    "e2": dict(in_channels=1, out_channels=1, model_channels=32, channel_mult=(1, 2),
               num_res_blocks=1, attention_levels=(), mid_attention=True, num_heads=1,
               dropout=0.0, num_groups=8, num_classes=None),
}


def timestep_embedding(t, dim: int, freqs=None):
    """Sinusoidal embedding of timesteps t (N,) → (N, dim): [sin(t ω), cos(t ω)] (module doc).

    freqs: the ω (half,) as a tensor of the output dtype/device (computed when None).
    """
    half = dim // 2
    if freqs is None:
        freqs = _sinusoid_freqs(dim, t.dtype if t.is_floating_point() else None, t.device)
    args = t.reshape(-1, 1) * freqs.reshape(1, half)
    return cat([args.sin(), args.cos()], dim=1)


def _sinusoid_freqs(dim, dtype, device):
    if dim < 4 or dim % 2:
        raise ValueError(f"timestep_embedding: dim must be even and ≥ 4, got {dim}")
    half = dim // 2    # ω in float64, then rounded once to the model's dtype
    j = creation.arange(half, dtype=dtypes.float64, device=device)
    w = (j * (-math.log(10000.0) / (half - 1))).exp()
    return w.to(dtype or dtypes.get_default_dtype())


class ResBlock(nn.Module):
    """x (N, ci, H, W), e (N, temb_dim) → (N, co, H, W); the ResBlock equation of the module doc."""

    def __init__(self, in_channels, out_channels, temb_dim, num_groups=8, dropout=0.0, **kw):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = nn.GroupNorm(num_groups, in_channels, **kw)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, **kw)
        self.time_proj = nn.Linear(temb_dim, out_channels, **kw)
        self.norm2 = nn.GroupNorm(num_groups, out_channels, **kw)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, **kw)
        if in_channels != out_channels:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, **kw)
        else:
            self.skip = nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(_norm_silu(self.norm1, x))
        h = h + self.time_proj(temb).reshape(temb.shape[0], self.out_channels, 1, 1)
        h = self.conv2(self.dropout(_norm_silu(self.norm2, h)))
        return self.skip(x) + h

    def extra_repr(self):
        return f"{self.in_channels} → {self.out_channels}"


class AttentionBlock(nn.Module):
    """x (N, C, H, W) → x + conv1×1(attention(GroupNorm(x))), ``num_heads`` heads over H·W."""

    def __init__(self, channels, num_heads=1, num_groups=8, **kw):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"AttentionBlock: {channels} channels do not split into "
                             f"{num_heads} heads")
        self.channels, self.num_heads = channels, num_heads
        self.norm = nn.GroupNorm(num_groups, channels, **kw)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, **kw)
        self.proj_out = nn.Conv2d(channels, channels, 1, **kw)

    def forward(self, x):
        n, c, hh, ww = x.shape
        heads, length = self.num_heads, hh * ww
        d = c // heads
        # qkv channels are ordered (q|k|v, head, d): (N, 3C, H, W) → 3 × (N, heads, L, d)
        qkv = self.qkv(self.norm(x)).reshape(n, 3, heads, d, length).permute(1, 0, 2, 4, 3)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])    # (N, heads, L, d)
        out = out.permute(0, 1, 3, 2).reshape(n, c, hh, ww)
        return x + self.proj_out(out)

    def extra_repr(self):
        return f"{self.channels}, heads={self.num_heads}"


class Downsample(nn.Module):
    """conv3×3 stride 2: (N, C, H, W) → (N, C, H/2, W/2)."""

    def __init__(self, channels, **kw):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1, **kw)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """nearest ×2 then conv3×3: (N, C, H, W) → (N, C, 2H, 2W)."""

    def __init__(self, channels, **kw):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, **kw)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Level(nn.Module):
    """One resolution of the UNet: ``blocks`` (ResBlocks, each optionally followed by an
    AttentionBlock) and a ``resample`` (Downsample on the way down, Upsample on the way up;
    the Upsample runs first)."""

    def __init__(self, blocks, resample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample

    def run_blocks(self, h, temb):
        for block in self.blocks:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
        return h


class MidBlock(nn.Module):
    """ResBlock, AttentionBlock (optional), ResBlock at the lowest resolution."""

    def __init__(self, channels, temb_dim, attention, num_heads, num_groups, dropout, **kw):
        super().__init__()
        self.block1 = ResBlock(channels, channels, temb_dim, num_groups, dropout, **kw)
        self.attn = AttentionBlock(channels, num_heads, num_groups, **kw) if attention else None
        self.block2 = ResBlock(channels, channels, temb_dim, num_groups, dropout, **kw)

    def forward(self, h, temb):
        h = self.block1(h, temb)
        if self.attn is not None:
            h = self.attn(h)
        return self.block2(h, temb)


class UNet(nn.Module):
    """ε_θ(x, t, y): x (N, in_channels, H, W), t (N,) int or float, y (N,) int or None →
    (N, out_channels, H, W). H and W must be divisible by 2^len(channel_mult).

    Args: model_channels c (also the sinusoid width; the time embedding is 4c wide),
    channel_mult (per level, c_i = c · mult), num_res_blocks (per level, both paths),
    attention_levels (level indices with an AttentionBlock after each ResBlock), mid_attention,
    num_heads, dropout (inside the ResBlocks), num_groups (GroupNorm), num_classes (None: no
    class input; K: Embedding(K + 1) with null class K), device, dtype, generator (a seeded
    initialisation independent of the global RNG).
    """

    def __init__(self, in_channels=1, out_channels=None, model_channels=32, channel_mult=(1, 2),
                 num_res_blocks=1, attention_levels=(), mid_attention=True, num_heads=1,
                 dropout=0.0, num_groups=8, num_classes=None, device=None, dtype=None,
                 generator=None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        channel_mult, attention_levels = tuple(channel_mult), tuple(attention_levels)
        if not channel_mult or num_res_blocks < 1:
            raise ValueError("UNet: need at least one level and one ResBlock per level")
        if any(not 0 <= i < len(channel_mult) for i in attention_levels):
            raise ValueError(f"UNet: attention_levels {attention_levels} outside levels "
                             f"0..{len(channel_mult) - 1}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels,
                           model_channels=model_channels, channel_mult=channel_mult,
                           num_res_blocks=num_res_blocks, attention_levels=attention_levels,
                           mid_attention=mid_attention, num_heads=num_heads, dropout=dropout,
                           num_groups=num_groups, num_classes=num_classes)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.model_channels, self.num_classes = model_channels, num_classes
        kw = dict(device=device, dtype=dtype)
        temb_dim = 4 * model_channels
        self.register_buffer("freqs", _sinusoid_freqs(model_channels, dtype, device),
                             persistent=False)
        self.time_embed = nn.Sequential(nn.Linear(model_channels, temb_dim, **kw), nn.SiLU(),
                                        nn.Linear(temb_dim, temb_dim, **kw))
        if num_classes is not None:
            self.class_embed = nn.Embedding(num_classes + 1, temb_dim, **kw)
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1, **kw)

        def blocks(ci, co, level):
            out = []
            for r in range(num_res_blocks):
                out.append(ResBlock(ci if r == 0 else co, co, temb_dim, num_groups, dropout, **kw))
                if level in attention_levels:
                    out.append(AttentionBlock(co, num_heads, num_groups, **kw))
            return out

        widths = [model_channels * m for m in channel_mult]
        self.down = nn.ModuleList()
        ch = model_channels
        for i, co in enumerate(widths):
            self.down.append(Level(blocks(ch, co, i), Downsample(co, **kw)))
            ch = co
        self.mid = MidBlock(ch, temb_dim, mid_attention, num_heads, num_groups, dropout, **kw)
        self.up = nn.ModuleList()      # deepest level first, the order they run in
        for i in reversed(range(len(widths))):
            self.up.append(Level(blocks(ch + widths[i], widths[i], i), Upsample(ch, **kw)))
            ch = widths[i]
        self.norm_out = nn.GroupNorm(num_groups, ch, **kw)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1, **kw)
        if generator is not None:
            self.reset_parameters(generator)

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """A named architecture (``"e2"``), constructor arguments overridable."""
        if name not in PRESETS:
            raise ValueError(f"UNet.from_preset: unknown preset {name!r} (known: "
                             f"{', '.join(PRESETS)})")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def e2(cls, **overrides):
        """The E2/E3 UNet of BENCH.md: 1×28×28, base width 32, ~0.58M parameters."""
        return cls.from_preset("e2", **overrides)

    def reset_parameters(self, generator=None):
        """Re-draw every layer's initial weights (from ``generator`` when given)."""
        for m in self.modules():
            if m is self or not hasattr(m, "reset_parameters"):
                continue
            if "generator" in inspect.signature(m.reset_parameters).parameters:
                m.reset_parameters(generator=generator)
            else:
                m.reset_parameters()

    # ------------------------------------------------------------------ forward
    def embed(self, t, y=None):
        """The conditioning vector e (N, 4c) from t (N,) and y (N,) or None (module doc)."""
        t = t.to(self.freqs.dtype)
        temb = self.time_embed(timestep_embedding(t, self.model_channels, self.freqs))
        if self.num_classes is not None:
            if y is None:   # the null class ∅
                y = creation.full((t.shape[0],), self.num_classes, dtype=dtypes.int64,
                                  device=t.device)
            temb = temb + self.class_embed(y)
        elif y is not None:
            raise ValueError("UNet: y given but the model has no class conditioning "
                             "(num_classes=None)")
        return temb

    def forward(self, x, t, y=None):
        """x (N, C_in, H, W), t (N,), y (N,) or None → ε̂ (N, C_out, H, W)."""
        self._check_inputs(x, t, y)
        if t.ndim == 0:
            t = t.reshape(1).expand(x.shape[0])
        temb = self.embed(t, y)
        h = self.conv_in(x)
        skips = []
        for level in self.down:
            h = level.run_blocks(h, temb)
            skips.append(h)
            h = level.resample(h)
        h = self.mid(h, temb)
        for level in self.up:
            h = cat([level.resample(h), skips.pop()], dim=1)
            h = level.run_blocks(h, temb)
        return self.conv_out(_norm_silu(self.norm_out, h))

    def _check_inputs(self, x, t, y):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet: x must be (N, {self.in_channels}, H, W), got shape "
                             f"{tuple(x.shape)}")
        k = 2 ** len(self.down)
        if x.shape[2] % k or x.shape[3] % k:
            raise ValueError(f"UNet: H and W must be divisible by 2^levels = {k}, got shape "
                             f"{tuple(x.shape)}")
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(f"UNet: t must be a scalar or have shape ({x.shape[0]},), got "
                             f"{tuple(t.shape)}")
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"UNet: y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
