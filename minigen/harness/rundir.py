"""The run directory every family writes, and its files (the same layout for all):

    RUN/config.json             {"family": ..., "train": the full config, ...family's own keys}:
                                everything needed to rebuild the model and continue
    RUN/checkpoint.safetensors  model(s), EMA, optimizer(s), LR schedule(s), step/epoch/batch,
                                RNG state, seconds, the family's extra state (atomic writes)
    RUN/loss.csv, RUN/loss.png  per-step losses (and gradient norms, learning rates), its plot
    RUN/samples/*.png           sample grids during and after training (EMA weights if kept)
    RUN/samples/samples_*.npz   raw samples written by ``minigen sample`` (array ``arr_0``)
    RUN/metrics.json            what the run measured; ``minigen eval`` adds its section

Writes are atomic (temporary file + rename): a reader, or a crash, never sees half a file.
"""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

__all__ = ["CHECKPOINT", "CONFIG", "METRICS", "LOSS_CSV", "LOSS_PNG", "write_json", "read_json",
           "require_pillow", "to_uint8", "save_grid", "save_strip", "save_scatter",
           "save_samples_npz",
           "read_loss_csv", "write_loss_csv", "plot_loss", "update_metrics"]

CHECKPOINT = "checkpoint.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"


def write_json(path: str, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def update_metrics(run: str, section: str | None, values: dict) -> dict:
    """Merge ``values`` into RUN/metrics.json (under ``section``, or at the top level)."""
    path = os.path.join(run, METRICS)
    metrics = read_json(path) if os.path.exists(path) else {}
    if section is None:
        metrics.update(values)
    else:
        metrics[section] = values
    write_json(path, metrics)
    return metrics


# ---------------------------------------------------------------------- images
def require_pillow():
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ImportError('writing PNG grids needs Pillow, which is not installed: pip install '
                          'pillow (or pip install "minigen[train]"), or pass --no-images') from None


def to_uint8(images) -> np.ndarray:
    """(N, C, H, W) in [−1, 1] → uint8 (N, H, W, C) with v = round((x + 1)/2 · 255)."""
    a = np.asarray(images, dtype=np.float32)
    a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return a.transpose(0, 2, 3, 1)


def _save_png(grid: np.ndarray, path: str, scale: int):
    from PIL import Image
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid,
                          mode="L" if grid.shape[-1] == 1 else "RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)


def save_grid(images, path: str, ncol: int = 8, scale: int | None = None, pad: int = 2):
    """Write images (N, C, H, W) with values in [−1, 1] (C = 1 or 3) as one PNG grid, row-major,
    ``pad``-pixel black gaps, magnified ``scale``× (default: to about 56 pixels per image)."""
    require_pillow()
    pix = to_uint8(images)
    n, h, w, c = pix.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    scale = scale or max(1, 56 // max(h, w))
    grid = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[y0:y0 + h, x0:x0 + w] = pix[i]
    _save_png(grid, path, scale)


def save_strip(trajectory, path: str, frames: int = 11, index: int = 0, scale=None):
    """One denoising trajectory x_T → x_0 as a strip of ``frames`` images evenly spaced along
    the list (the first and the last always included), of sample ``index``."""
    k = len(trajectory)
    picks = sorted({round(i * (k - 1) / (frames - 1)) for i in range(frames)}) if k > 1 else [0]
    chosen = np.stack([np.asarray(trajectory[i][index]) for i in picks])
    save_grid(chosen, path, ncol=len(picks), scale=scale)


def save_scatter(points, path: str, reference=None, title: str | None = None):
    """2-D samples (N, 2) as a scatter plot PNG (matplotlib), beside ``reference`` points
    (e.g. the data) in a second panel when given."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"save_scatter: points must be (N, 2), got {pts.shape}")
    panels = [("samples", pts)] + ([("data", np.asarray(reference))] if reference is not None
                                   else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), dpi=100,
                             squeeze=False)
    lim = np.nanmax(np.abs(np.concatenate([p for _, p in panels]))) * 1.05 or 1.0
    for ax, (name, p) in zip(axes[0], panels):
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.4)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(name if title is None else f"{title}: {name}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def save_samples_npz(samples, path: str) -> tuple:
    """Raw samples as ``arr_0`` of an .npz, in the layout FID suites read: images (N, C, H, W)
    in [−1, 1] become uint8 (N, H, W, C); 2-D data (N, D) stays float32. Returns the shape."""
    a = np.asarray(samples)
    arr = to_uint8(a) if a.ndim == 4 else a.astype(np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, arr)
    os.replace(tmp, path)
    return arr.shape


# ---------------------------------------------------------------------- loss log
def read_loss_csv(path: str, upto_step: int | None = None) -> list:
    """Rows of loss.csv as dicts of floats (``step`` an int), optionally those ≤ upto_step."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {k: float(v) for k, v in r.items()}
            row["step"] = int(row["step"])
            if upto_step is None or row["step"] <= upto_step:
                rows.append(row)
    return rows


def write_loss_csv(path: str, rows: list):
    """Columns: step, then the keys of the first row in order (repr of floats: exact)."""
    fields = ["step"] + [k for k in (rows[0] if rows else {"loss": 0}) if k != "step"]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            w.writerow([r["step"]] + [repr(float(r[k])) for k in fields[1:]])
    os.replace(tmp, path)


def plot_loss(rows: list, path: str, keys: tuple | None = None):
    """loss.png with matplotlib: every step's loss as faint points, a moving average over ~1%
    of the run (at least 10 steps) as a line; log y axis when the loss is positive and spans
    more than a factor of 10. One line per loss column (``loss`` or ``loss_<optimizer>``)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = keys or tuple(k for k in (rows[0] if rows else {}) if k.startswith("loss"))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    positive, span = True, 1.0
    for key in keys:
        steps = np.array([r["step"] for r in rows], dtype=np.float64)
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        ok = np.isfinite(vals)
        steps, vals = steps[ok], vals[ok]
        if not len(vals):
            continue
        positive &= bool((vals > 0).all())
        if positive:
            span = max(span, vals.max() / vals.min())
        ax.plot(steps, vals, ".", ms=2, alpha=0.25, label=None)
        k = max(10, len(vals) // 100) if len(vals) >= 20 else 1
        smooth = np.convolve(vals, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.5,
                label=f"{key} (moving average of {k})" if k > 1 else key)
    if positive and span > 10:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    if keys:
        ax.legend(loc="upper right")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def finite_or_nan(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else float("nan")
