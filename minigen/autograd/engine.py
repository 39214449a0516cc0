"""Reverse-mode differentiation over the graph of ``Function`` nodes.

The graph: every non-leaf tensor points at the node that made it (``t._ctx``, output index
``t._idx``); every node keeps one edge per input (None, a leaf Tensor, or ``(node, index)``).
Backward visits the nodes in reverse topological order, so a node runs once, after all of its
consumers have added their contributions: a tensor used several times gets the sum of its
gradients. Leaves accumulate into ``.grad`` (or, for ``autograd.grad``, into a dict).
"""
from __future__ import annotations

from ..backend import device_of as _device_of
from .function import _check_finite
from .grad_mode import STATE, no_grad


def _topological_order(roots):
    """Nodes reachable from ``roots`` with each node after every node that consumes it."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.edges))]
        while stack:
            node, it = stack[-1]
            for edge in it:
                if type(edge) is tuple and id(edge[0]) not in seen:
                    seen.add(id(edge[0]))
                    stack.append((edge[0], iter(edge[0].edges)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def _run_hooks(hooks, g, device):
    """Call ``hook(grad_tensor)`` in order; a returned tensor replaces the gradient."""
    from ..tensor import Tensor
    for hook in hooks:
        r = hook(Tensor._wrap(g, device, False))
        if r is not None:
            r = r.data if isinstance(r, Tensor) else r
            if r.shape != g.shape:
                raise RuntimeError(f"hook {getattr(hook, '__name__', hook)!r} returned a gradient "
                                   f"of shape {tuple(r.shape)}, expected {tuple(g.shape)}")
            g = r
    return g


def _owner(array):
    base = array.base
    return id(array if base is None else base)


def run_backward(roots, root_grads, retain_graph=False, capture=None):
    """Propagate ``root_grads`` (arrays) from ``roots`` (tensors) back to the leaves.

    capture: None to accumulate into leaves' ``.grad``; else a dict mapping ``id(leaf)`` or
    ``(id(node), index)`` to a slot that receives the gradient instead (``autograd.grad``).

    A leaf's contributions are summed over the whole pass and handed over at the end (its hooks
    see the total, once), so an error raised during the pass leaves every ``.grad`` as it was.
    """
    from ..tensor import Tensor

    grads = {}  # id(node) -> list of summed output gradients
    leaf_grads = {}  # id(leaf) -> [leaf, summed gradient]
    retained_grads = []  # (tensor, gradient) for retain_grad() tensors
    nodes = []
    stored = {_owner(g) for g in root_grads}  # arrays already handed out (never alias two .grad)

    def add_leaf(leaf, g):
        acc = leaf_grads.get(id(leaf))
        if acc is None:
            leaf_grads[id(leaf)] = [leaf, g]
        else:
            acc[1] = acc[1] + g

    def give_leaf(leaf, g):
        if g.shape != leaf.data.shape:
            raise RuntimeError(f"internal error: gradient of shape {g.shape} for a leaf of shape "
                               f"{leaf.data.shape}")
        if g.dtype != leaf.data.dtype:
            g = g.astype(leaf.data.dtype)
        if leaf._hooks:
            g = _run_hooks(leaf._hooks, g, leaf._device)
        if capture is not None:
            key = id(leaf)
            if key in capture:
                capture[key] = g
            return
        if leaf.grad is None:
            # .grad must own writable memory: not a broadcast view (read-only), not an array
            # handed to another leaf or the caller
            if _owner(g) in stored or not g.flags.c_contiguous or \
                    not getattr(g.flags, "writeable", True):
                g = g.copy()
            stored.add(_owner(g))
            leaf.grad = Tensor._wrap(g, leaf._device, False)
        else:
            leaf.grad.data = leaf.grad.data + g

    for t, g in zip(roots, root_grads):
        if t._ctx is None:
            add_leaf(t, g)
            continue
        slot = grads.setdefault(id(t._ctx), [None] * t._ctx.n_outputs)
        slot[t._idx] = g if slot[t._idx] is None else slot[t._idx] + g
        nodes.append(t._ctx)

    order = _topological_order(nodes)
    # Check the whole graph before running any backward: an error leaves everything as it was.
    for node in order:
        if getattr(node, "_freed", False):
            raise RuntimeError(
                f"trying to backward through the graph a second time (node {node.name}): its "
                "saved arrays were freed by the first backward. Pass retain_graph=True to the "
                "first backward if you need to backward twice.")
        node._check_versions()

    with no_grad():
        for node in order:
            out_grads = grads.pop(id(node), None)
            if out_grads is None:
                continue
            hooks = getattr(node, "_grad_hooks", None)
            if hooks:
                for idx, hs in hooks.items():
                    if hs and out_grads[idx] is not None:
                        out_grads[idx] = _run_hooks(hs, out_grads[idx], _device_of(out_grads[idx]))
            retained = getattr(node, "_retained", None)
            if retained:
                for idx, ref in retained.items():
                    t = ref()
                    if t is not None and out_grads[idx] is not None:
                        retained_grads.append((t, out_grads[idx]))
            if capture is not None:
                for idx in range(node.n_outputs):
                    key = (id(node), idx)
                    if key in capture and out_grads[idx] is not None:
                        capture[key] = out_grads[idx]
            if node.n_outputs > 1:
                in_grads = node.backward(*out_grads)
            else:
                in_grads = node.backward(out_grads[0])
            if type(in_grads) is not tuple:
                in_grads = (in_grads,)
            if STATE.anomaly:
                _check_finite(node.name, "backward gradient", in_grads)
            for edge, g in zip(node.edges, in_grads):
                if edge is None or g is None:
                    continue
                if type(edge) is tuple:
                    parent, idx = edge
                    slot = grads.get(id(parent))
                    if slot is None:
                        slot = grads[id(parent)] = [None] * parent.n_outputs
                    slot[idx] = g if slot[idx] is None else slot[idx] + g
                else:
                    add_leaf(edge, g)
            if not retain_graph:
                node._release()

        for leaf, g in leaf_grads.values():
            give_leaf(leaf, g)
        for t, g in retained_grads:
            t.grad = Tensor._wrap(g.copy(), t._device, False) if t.grad is None \
                else Tensor._wrap(t.grad.data + g, t._device, False)
