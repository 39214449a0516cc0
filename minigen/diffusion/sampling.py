"""The sampling loop (MATH.md §6 Algorithm 2, §7 DDIM) with guidance (MATH.md §8).

    x_T ~ N(0, I)
    for t in scheduler.timesteps (descending):
        ε̄ = guided model output at (x_t, t)
        x_{t'} = scheduler.step(ε̄, t, x_t).prev_sample          (DDPM: t' = t − 1; DDIM: τ_{k−1})
    return x_0

Guidance, with class labels y (N,):

    classifier-free   ε̄ = (1 + w) ε_θ(x_t, t, y) − w ε_θ(x_t, t, ∅)        guidance_scale = w
        Both branches in ONE model call on the batch [x_t; x_t] with labels [y; ∅] (∅ = the
        model's null class, ``model.num_classes``); the combine happens inside the fused step
        kernel (``step(..., guidance_scale=w)``). w = 0 is the plain conditional model (one
        call on the batch of N). diffusers' guidance_scale is 1 + w.
    classifier        ε̄ = ε − γ √(1 − ᾱ_t) ∇_{x_t} log p_φ(y | x_t)            classifier_scale = γ
        ``classifier(x_t, t)`` → logits (N, K), trained on noisy x_t; the input gradient comes
        from ``minigen.autograd.grad`` (ε-prediction models only).

Device: the timesteps stay on ``device`` as an int64 Tensor and each t is a 0-d view of it
(no ``.item()``, no host round trip per step), so on a GPU the loop never synchronises: a
sampling step makes 0 device→host transfers (DDPM or DDIM, the class-conditional UNet, with or
without either guidance; counted by ``tests/test_host_sync.py``). The label check of the
class embedding runs only under ``minigen.debug_checks()`` there (``autograd/grad_mode.py``).
Seeded: with ``generator`` every random draw (x_T and each step's z) comes from it, so the
same seed gives the same samples bit for bit.
"""
from __future__ import annotations

from .. import creation, dtypes
from ..ops import cat
from ..autograd import enable_grad, no_grad
from ..autograd.functional import grad as autograd_grad
from ..backend import Device
from ..nn import functional as F
from ..tensor import Tensor

__all__ = ["sample", "classifier_log_prob_grad"]


def classifier_log_prob_grad(classifier, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
    """∇_{x_t} log p_φ(y | x_t), shape of x (one backward through the classifier).

    Each sample's log-probability depends only on its own x_t, so the gradient of the sum
    over the batch gives every row its own gradient."""
    with enable_grad():
        x_in = x.detach().requires_grad_(True)
        log_p = F.log_softmax(classifier(x_in, t), dim=-1)
        selected = log_p.gather(1, y.reshape(-1, 1)).sum()
        (g,) = autograd_grad(selected, [x_in])
    return g.detach()


def _check(model, scheduler, shape, class_labels, guidance_scale, classifier,
           classifier_scale, null_class):
    if not hasattr(scheduler, "step") or not hasattr(scheduler, "timesteps"):
        raise TypeError(f"sample: scheduler must be a DDPMScheduler or DDIMScheduler, got "
                        f"{type(scheduler).__name__}")
    if len(shape) < 2:
        raise ValueError(f"sample: shape must be (N, C, ...), got {tuple(shape)}")
    n = shape[0]
    if class_labels is not None:
        if not isinstance(class_labels, Tensor):
            raise TypeError("sample: class_labels must be an int64 Tensor of shape (N,)")
        if tuple(class_labels.shape) != (n,):
            raise ValueError(f"sample: class_labels has shape {tuple(class_labels.shape)}; "
                             f"expected ({n},) for shape {tuple(shape)}")
    if guidance_scale:
        if class_labels is None:
            raise ValueError("sample: classifier-free guidance (guidance_scale != 0) needs "
                             "class_labels")
        if null_class is None:
            raise ValueError("sample: classifier-free guidance needs a class-conditional model "
                             "(model.num_classes, whose index is the null class ∅) or "
                             "null_class=")
    if classifier_scale:
        if classifier is None or class_labels is None:
            raise ValueError("sample: classifier guidance (classifier_scale != 0) needs a "
                             "classifier and class_labels")
        if getattr(scheduler, "prediction_type", "epsilon") != "epsilon":
            raise ValueError("sample: classifier guidance is written in ε form; the scheduler "
                             f"has prediction_type={scheduler.prediction_type!r}")


def sample(model, scheduler, shape, *, num_inference_steps=None, generator=None,
           class_labels=None, guidance_scale: float = 0.0, classifier=None,
           classifier_scale: float = 0.0, device="cpu", dtype=None, null_class=None,
           progress: bool = False, return_trajectory: bool = False):
    """Draw samples x_0 of ``shape`` = (N, C, H, W) by running ``scheduler`` from x_T ~ N(0, I).

    model(x_t, t, y) → ε_θ (or x̂_0 / v, as scheduler.prediction_type says); t is passed as an
    (N,) int64 Tensor, y (only when class_labels is given) as (N,) int64.
    num_inference_steps: calls ``scheduler.set_timesteps`` (None: the scheduler's current
    timesteps, all T until set_timesteps is called). guidance_scale w, classifier_scale γ: the
    module docstring. generator: a minigen Generator on ``device`` (None: the global RNG).
    Returns x_0 (N, C, H, W), or (x_0, [x_T, ..., x_0]) with return_trajectory.
    """
    device = Device(device)
    null_class = getattr(model, "num_classes", None) if null_class is None else null_class
    _check(model, scheduler, shape, class_labels, guidance_scale, classifier,
           classifier_scale, null_class)
    if num_inference_steps is not None:
        scheduler.set_timesteps(num_inference_steps, device=device)
    elif scheduler.timesteps.device != device:
        steps = scheduler.num_inference_steps or scheduler.num_train_timesteps
        scheduler.set_timesteps(steps, device=device)
    dtype = dtypes.float32 if dtype is None else dtype
    n = shape[0]
    x = creation.randn(*shape, generator=generator, dtype=dtype, device=device)
    y = class_labels
    cfg = bool(guidance_scale)
    if cfg:       # labels of the batched call [x; x]: [y; ∅], built once
        y2 = cat([y, creation.full((n,), null_class, dtype=dtypes.int64,
                                            device=device)])
    sqrt_omab = None
    if classifier_scale:
        sqrt_omab = scheduler.schedule.on(device, dtype).sqrt_one_minus_alphas_cumprod
    timesteps = scheduler.timesteps
    trajectory = [x] if return_trajectory else None
    steps = range(timesteps.shape[0])
    if progress:
        try:
            from tqdm import tqdm
            steps = tqdm(steps, unit="step", dynamic_ncols=True)
        except ImportError:
            pass
    for i in steps:
        t = timesteps[i]                                   # 0-d, on the device
        with no_grad():
            if cfg:
                out = model(cat([x, x]), t.reshape(1).expand(2 * n), y2)
            else:
                tb = t.reshape(1).expand(n)
                out = model(x, tb) if y is None else model(x, tb, y)
        w = float(guidance_scale) if cfg else None
        if classifier_scale:
            if cfg:   # combine here: the classifier term is added to the guided ε̄
                out = (1 + w) * out[:n] - w * out[n:]
                w = None
            g = classifier_log_prob_grad(classifier, x, t.reshape(1).expand(n), y)
            out = out - float(classifier_scale) * sqrt_omab[t] * g
        with no_grad():
            x = scheduler.step(out, t, x, generator=generator, guidance_scale=w).prev_sample
        if return_trajectory:
            trajectory.append(x)
    return (x, trajectory) if return_trajectory else x
