"""Reverse-mode differentiation over the graph of ``Function`` nodes.

The graph: every non-leaf tensor points at the node that made it (``t._ctx``, output index
``t._idx``); every node keeps one edge per input (None, a leaf Tensor, or ``(node, index)``).
Backward visits the nodes in reverse topological order, so a node runs once, after all of its
consumers have added their contributions: a tensor used several times gets the sum of its
gradients. Leaves accumulate into ``.grad`` (or, for ``autograd.grad``, into a dict).
"""
from __future__ import annotations

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


def _owner(array):
    base = array.base
    return id(array if base is None else base)


def run_backward(roots, root_grads, retain_graph=False, capture=None):
    """Propagate ``root_grads`` (arrays) from ``roots`` (tensors) back to the leaves.

    capture: None to accumulate into leaves' ``.grad``; else a dict mapping ``id(leaf)`` or
    ``(id(node), index)`` to a slot that receives the gradient instead (``autograd.grad``).
    """
    from ..tensor import Tensor

    grads = {}  # id(node) -> list of summed output gradients
    nodes = []
    stored = {_owner(g) for g in root_grads}  # arrays already handed out (never alias two .grad)

    def give_leaf(leaf, g):
        if g.shape != leaf.data.shape:
            raise RuntimeError(f"internal error: gradient of shape {g.shape} for a leaf of shape "
                               f"{leaf.data.shape}")
        if g.dtype != leaf.data.dtype:
            g = g.astype(leaf.data.dtype)
        if capture is not None:
            key = id(leaf)
            if key in capture:
                prev = capture[key]
                capture[key] = g if prev is None else prev + g
            return
        if leaf.grad is None:
            own = _owner(g)
            if own in stored:
                g = g.copy()
            stored.add(_owner(g))
            leaf.grad = Tensor._wrap(g, leaf._device, False)
        else:
            leaf.grad.data = leaf.grad.data + g
        for hook in leaf._hooks or ():
            hook(leaf.grad)

    for t, g in zip(roots, root_grads):
        if t._ctx is None:
            give_leaf(t, g)
            continue
        slot = grads.setdefault(id(t._ctx), [None] * t._ctx.n_outputs)
        slot[t._idx] = g if slot[t._idx] is None else slot[t._idx] + g
        nodes.append(t._ctx)

    with no_grad():
        for node in _topological_order(nodes):
            out_grads = grads.pop(id(node), None)
            if out_grads is None:
                continue
            if getattr(node, "_freed", False):
                raise RuntimeError(
                    f"trying to backward through the graph a second time (node {node.name}): its "
                    "saved arrays were freed by the first backward. Pass retain_graph=True to the "
                    "first backward if you need to backward twice.")
            node._check_versions()
            retained = getattr(node, "_retained", None)
            if retained:
                for idx, ref in retained.items():
                    t = ref()
                    if t is not None and out_grads[idx] is not None:
                        g = out_grads[idx]
                        t.grad = Tensor._wrap(g.copy(), t._device, False) if t.grad is None \
                            else Tensor._wrap(t.grad.data + g, t._device, False)
            if capture is not None:
                for idx in range(node.n_outputs):
                    key = (id(node), idx)
                    if key in capture and out_grads[idx] is not None:
                        prev = capture[key]
                        capture[key] = out_grads[idx] if prev is None else prev + out_grads[idx]
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
                    give_leaf(edge, g)
            if not retain_graph:
                node._release()
