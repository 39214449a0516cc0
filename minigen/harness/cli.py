"""The command line of the harness, generated from the family registry:

    minigen list                               families, presets, datasets
    minigen train FAMILY [shared options] [the family's options]
    minigen sample RUN [--num N] [--seed S] [the family's sampling options]
    minigen eval RUN [the family's evaluation options]

Shared options are the fields of ``TrainConfig`` (``family.py``); a family's own options are the
fields its Config adds, so ``--lr`` or ``--steps`` mean the same in every family. ``sample`` and
``eval`` read the family from RUN/config.json and then parse that family's options.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from .family import TrainConfig, get_family

_SPECIAL = {"progress": "--no-progress", "images": "--no-images"}
_HELP = {"progress": "no progress bar or lines", "images": "no PNGs (no Pillow needed)",
         "detect_anomaly": "name the op that first produces NaN/inf (slow)",
         "device": "cpu or cuda[:N]", "batch_size": "examples per optimizer step",
         "lr": "Adam learning rate", "seed": "seeds the weights, the data order and the noise"}


def _field_type(f, default):
    if default is not None and not isinstance(default, bool):
        return type(default)
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, typ in (("int", int), ("float", float), ("str", str)):
        if t.startswith(name):
            return typ
    return str


def add_config_args(parser, config_cls, include=None, exclude=()):
    """One flag per field of ``config_cls`` (those named in ``include`` when given, none of
    ``exclude``), with the family's defaults shown."""
    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        if (include is not None and f.name not in include) or f.name in exclude:
            continue
        default = getattr(defaults, f.name)
        meta = dict(f.metadata)
        help_ = meta.get("help", _HELP.get(f.name, ""))
        if f.name in _SPECIAL:
            parser.add_argument(_SPECIAL[f.name], dest=f.name, action="store_false",
                                default=default, help=help_)
            continue
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", default=default,
                                help=help_)
            continue
        kw = {"choices": meta["choices"]} if "choices" in meta else {}
        shown = "" if default is None else f"default {default}"
        parser.add_argument(flag, dest=f.name, type=_field_type(f, default), default=default,
                            help=f"{help_} ({shown})" if help_ and shown else (help_ or shown
                                                                                 or None), **kw)
    return parser


def _config_from_args(config_cls, args):
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in vars(args).items() if k in names})


def _error(cmd, exc, code=2):
    print(f"minigen {cmd}: error: {exc}", file=sys.stderr)
    return code


# ---------------------------------------------------------------------- list
def _run_list(args):
    from .family import FAMILIES
    get_family("ddpm")               # imports the built-in families
    from ..data import REGISTRY
    print("families (minigen train FAMILY --help):")
    for name, cls in sorted(FAMILIES.items()):
        presets = ",".join(cls.presets) or "-"
        print(f"  {name:8s} presets {presets:10s} data {','.join(cls.datasets):24s} {cls.help}")
    print("datasets (--data NAME):")
    for name, entry in REGISTRY.items():
        print(f"  {name:14s} {entry['kind']:7s} {entry['help']}")
    return 0


# ---------------------------------------------------------------------- train
def _add_train(sub):
    from .family import FAMILIES
    get_family("ddpm")
    train = sub.add_parser("train", help="train a model family into a run directory",
                           description="Train a model family; everything lands in --out: "
                                       "config.json, checkpoint.safetensors, loss.csv, loss.png, "
                                       "samples/, metrics.json. --resume continues exactly.")
    fam_sub = train.add_subparsers(dest="family", metavar="FAMILY")
    fam_sub.required = True
    for name, cls in sorted(FAMILIES.items()):
        p = fam_sub.add_parser(name, help=cls.help, description=(cls.__doc__ or cls.help))
        shared = p.add_argument_group("shared options (every family)")
        own = p.add_argument_group(f"{name} options")
        common = {f.name for f in dataclasses.fields(TrainConfig)}
        add_config_args(shared, cls.Config, include=common)
        add_config_args(own, cls.Config, exclude=common)
        for action in p._actions:
            if action.dest == "preset" and cls.presets:
                action.choices = tuple(cls.presets)
        shared.add_argument("--resume", action="store_true",
                            help="continue the run in --out exactly (same settings)")
        shared.add_argument("--run-dir", dest="out", help=argparse.SUPPRESS)
        p.set_defaults(func=_run_train, family_cls=cls)


def _run_train(args):
    from ..data import DataNotFoundError
    from .loop import TrainingAnomaly, fit
    cls = args.family_cls
    try:
        cfg = _config_from_args(cls.Config, args)
        fit(cls, cfg, resume=args.resume)
    except TrainingAnomaly as exc:
        print(f"minigen train {cls.name}: {exc}", file=sys.stderr)
        return 3
    except (DataNotFoundError, ImportError, ValueError, FileNotFoundError) as exc:
        return _error(f"train {cls.name}", exc)
    except KeyboardInterrupt:
        return 130
    return 0


# ---------------------------------------------------------------------- sample / eval
def _family_for(argv, cmd):
    """The family of the RUN named in ``argv`` after ``cmd``, or None (help, bad RUN)."""
    try:
        i = argv.index(cmd)
    except ValueError:
        return None
    for a in argv[i + 1:]:
        if not a.startswith("-"):
            try:
                from . import family_of_run
                return family_of_run(a)
            except (FileNotFoundError, ValueError, OSError):
                return None
    return None


def _add_sample(sub, fam_cls):
    p = sub.add_parser(
        "sample", help="sample a trained run: a PNG grid and the raw samples as .npz",
        description="Draw samples from a run's (EMA) weights; writes RUN/samples/<name>.png and "
                    "<name>.npz (array arr_0: N×H×W×C uint8 images, or N×D float32). The "
                    "options after the shared ones depend on the run's family.")
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("--num", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG path of the grid (default: RUN/samples/...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true", help="use the raw (not averaged) weights")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    if fam_cls is not None:
        fam_cls.add_sample_args(p.add_argument_group(f"{fam_cls.name} options"))
    p.set_defaults(func=_run_sample)


def _run_sample(args):
    from . import load_run, rundir
    try:
        if args.num < 1:
            raise ValueError(f"--num must be ≥ 1, got {args.num}")
        run = load_run(args.run, device=args.device, ema=not args.no_ema)
        out = run.sample_command(args)
        images, name = out[0], out[1]
        extra = out[2] if len(out) > 2 else {}
        png = args.out or os.path.join(args.run, "samples", name + ".png")
        stem = png[:-4] if png.endswith(".png") else png
        written = []
        if images.ndim == 4:
            rundir.save_grid(images, png, ncol=extra.get("ncol", 8))
            written.append(png)
            if extra.get("trajectory") is not None:
                rundir.save_strip(extra["trajectory"], stem + "_trajectory.png")
                written.append(stem + "_trajectory.png")
        elif images.ndim == 2 and images.shape[1] == 2:     # 2-D data: a scatter plot
            rundir.save_scatter(images, png, reference=extra.get("reference"))
            written.append(png)
        npz = os.path.join(os.path.dirname(stem), "samples_" + os.path.basename(stem) + ".npz")
        shape = rundir.save_samples_npz(images, npz)
        written.append(f"{npz} (arr_0 {'x'.join(map(str, shape))})")
    except (FileNotFoundError, ImportError, ValueError) as exc:
        return _error("sample", exc)
    print(f"wrote {', '.join(written)}")
    return 0


def _add_eval(sub, fam_cls):
    p = sub.add_parser(
        "eval", help="evaluate a trained run (its family's metrics)",
        description="Evaluate a run's (EMA) weights with its family's metrics; writes "
                    "RUN/eval.json and the 'eval' section of RUN/metrics.json.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", default="eval.json",
                   help="results file inside RUN (default eval.json); metrics.json keeps the "
                        "results under its stem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    if fam_cls is not None:
        fam_cls.add_eval_args(p.add_argument_group(f"{fam_cls.name} options"))
    p.set_defaults(func=_run_eval)


def _run_eval(args):
    from ..data import DataNotFoundError
    from . import evaluate_run_dir
    base = {"run", "out", "seed", "device", "progress", "func", "command"}
    opts = {k: v for k, v in vars(args).items() if k not in base}
    try:
        evaluate_run_dir(args.run, device=args.device, seed=args.seed, progress=args.progress,
                         out=args.out, **opts)
    except (FileNotFoundError, DataNotFoundError, ImportError, ValueError) as exc:
        return _error("eval", exc)
    return 0


def _run_info(args):
    from .. import info
    return info.main() or 0


def build_parser(argv=None) -> argparse.ArgumentParser:
    from .. import __version__
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="minigen", description="minigen: a small autograd tensor engine for generative "
                                    "models. Start with: minigen list; minigen train vae.")
    parser.add_argument("--version", action="version", version=f"minigen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    lst = sub.add_parser("list", help="model families, their presets and datasets")
    lst.set_defaults(func=_run_list)
    _add_train(sub)
    _add_sample(sub, _family_for(argv, "sample"))
    _add_eval(sub, _family_for(argv, "eval"))
    info = sub.add_parser("info", help="what is built and active (native, triton, cuda)")
    info.set_defaults(func=_run_info)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return args.func(args)
