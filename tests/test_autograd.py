"""The autograd engine: graph order, accumulation, grad modes, ``autograd.grad``, version
counters and in-place ops, anomaly mode, hooks, ``gradcheck`` itself."""
import numpy as np
import pytest

import minigen as mg
from minigen.autograd import Function, gradcheck
from op_check import check_op


def leaf(values, dtype=mg.float64):
    return mg.tensor(values, dtype=dtype, requires_grad=True)


# ---------------------------------------------------------------------- graph structure
def test_node_used_several_times_sums_gradients():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x + x * 3 + x  # x appears in three branches and twice in one node
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1, 2, 3]) + 4)


def test_diamond_graph():
    x = leaf([0.5, -1.0])
    a = x.exp()
    b, c = a * 2, a.sin()  # two paths from a
    d = b * c              # join
    d.sum().backward()
    ax = np.exp(x.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), (2 * np.sin(ax) + 2 * ax * np.cos(ax)) * ax)


def test_deep_chain_does_not_recurse():
    x = leaf([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad.item() == 1.0


def test_intermediate_node_reused_by_later_ops_runs_once():
    calls = []

    class Count(Function):
        saves_inputs = False

        def forward(self, x):
            return x * 1

        def backward(self, g):
            calls.append(1)
            return g

    x = leaf([1.0, 2.0])
    h = Count.apply(x)
    (h * h + h.sum()).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, 2.0]) + 2)


def test_gradients_reduced_to_broadcast_shapes():
    a = leaf(np.ones((3, 1)))
    b = leaf(np.arange(4.0))
    c = leaf(2.0)
    (a * b + c).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), 6.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, 3.0))
    assert c.grad.item() == 12.0


def test_requires_grad_propagation():
    x, y = leaf([1.0, 2.0]), mg.tensor([3.0, 4.0])
    assert x.is_leaf and x.grad_fn is None
    z = x * y
    assert z.requires_grad and not z.is_leaf and z.grad_fn is not None
    assert not (y * 2).requires_grad and (y * 2).grad_fn is None
    assert not (x > 1).requires_grad          # comparisons are not differentiable
    assert not x.argmax().requires_grad
    assert not x.max(0).indices.requires_grad
    assert x.max(0).values.requires_grad
    with mg.no_grad():
        assert not (x * 2).requires_grad
    assert not x.detach().requires_grad
    assert (x.detach() * x).requires_grad


def test_backward_with_gradient_for_non_scalar():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = x * x
    v = np.array([[1.0, 0.5], [-1.0, 2.0]])
    y.backward(gradient=mg.tensor(v))
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy() * v)
    x.grad = None
    (x * 3).backward(v.tolist())  # plain data is accepted too
    np.testing.assert_allclose(x.grad.numpy(), 3 * v)


def test_backward_accumulates_and_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * np.array([1.0, 2.0]))
    y.backward()  # the last one frees the graph
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_graph_freed_after_backward():
    x = leaf([1.0, 2.0])
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match=r"backward through the graph a second time.*Exp"):
        h.mean().backward()  # reaches the freed Exp node


def test_freed_graph_error_leaves_grads_untouched():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    h = x.exp()
    h.sum().backward()
    grad_before = x.grad.numpy().copy()
    with pytest.raises(RuntimeError, match="second time"):
        (h * w).sum().backward()  # w's gradient could be computed, but nothing may change
    assert w.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), grad_before)


def test_leaf_grad_is_writable_owned_memory():
    x = leaf(np.ones((2, 3)))
    (x.sum() * 3).backward()  # Sum's backward hands out a broadcast (read-only) view
    x.grad.zero_()
    x.grad.add_(1.0)
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))
    a, b = leaf([1.0]), leaf([2.0])
    (a + b).sum().backward()  # both get the same gradient array from Add
    a.grad.mul_(5)
    assert b.grad.item() == 1.0


def test_detach():
    x = leaf([1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.numpy(), x.data)
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0])  # d is a constant


# ---------------------------------------------------------------------- grad modes
def test_no_grad_enable_grad_set_grad_enabled():
    x = leaf([1.0])
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        assert not (x * 2).requires_grad
        with mg.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert mg.is_grad_enabled()
    with mg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert mg.is_grad_enabled()
    mg.set_grad_enabled(False)  # as a plain call
    try:
        assert not mg.is_grad_enabled()
    finally:
        mg.set_grad_enabled(True)
    assert mg.is_grad_enabled()


def test_grad_modes_as_decorators():
    x = leaf([1.0])

    @mg.no_grad()
    def f():
        return x * 2

    @mg.set_grad_enabled(False)
    def g():
        return x * 2

    assert mg.is_grad_enabled()  # making the decorator does not switch the mode
    assert not f().requires_grad and not g().requires_grad
    assert mg.is_grad_enabled()

    @mg.enable_grad()
    def h():
        return x * 2

    with mg.no_grad():
        assert h().requires_grad


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with mg.no_grad():
            raise ValueError
    assert mg.is_grad_enabled()


# ---------------------------------------------------------------------- autograd.grad
def test_grad_basic_and_does_not_touch_dot_grad():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = (x * w).sum()
    gx, = mg.autograd.grad(y, x, retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), [3.0, 4.0])
    assert x.grad is None and w.grad is None
    gx, gw = mg.autograd.grad(y, [x, w])
    np.testing.assert_allclose(gw.numpy(), [1.0, 2.0])
    assert x.grad is None and w.grad is None


def test_grad_non_leaf_inputs():
    x = leaf([1.0, 2.0])
    h = x * 3
    y = (h * h).sum()
    gh, gx = mg.autograd.grad(y, [h, x])
    np.testing.assert_allclose(gh.numpy(), 2 * h.detach().numpy())
    np.testing.assert_allclose(gx.numpy(), 18 * x.detach().numpy())


def test_grad_allow_unused():
    x, unused = leaf([1.0]), leaf([2.0])
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        mg.autograd.grad(y, [x, unused], retain_graph=True)
    gx, gu = mg.autograd.grad(y, [x, unused], allow_unused=True)
    assert gu is None and gx.item() == 2.0


def test_grad_outputs_and_several_outputs():
    x = leaf([1.0, 2.0])
    y1, y2 = x * 2, x ** 2
    gx, = mg.autograd.grad([y1, y2], x, grad_outputs=[mg.ones(2, dtype=mg.float64),
                                                      mg.tensor([1.0, -1.0], dtype=mg.float64)])
    np.testing.assert_allclose(gx.numpy(), [2 + 2, 2 - 4])


def test_grad_runs_hooks_and_sums_multiple_uses():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 10)
    gx, = mg.autograd.grad((x * x).sum(), x)
    np.testing.assert_allclose(gx.numpy(), 10 * 2 * np.array([1.0, 2.0]))


def test_autograd_backward_several_roots():
    x = leaf([1.0, 2.0])
    mg.autograd.backward([(x * 2).sum(), (x * x).sum()])
    np.testing.assert_allclose(x.grad.numpy(), 2 + 2 * np.array([1.0, 2.0]))


def test_create_graph_is_refused_clearly():
    x = leaf([1.0])
    with pytest.raises(NotImplementedError, match="create_graph"):
        mg.autograd.grad((x * x).sum(), x, create_graph=True)


# ---------------------------------------------------------------------- version counter
def test_saved_tensor_modified_in_place_raises_naming_the_op():
    x = leaf([1.0, 2.0])
    h = x * 2
    y = (h * h).sum()  # Mul saves h
    with mg.no_grad():
        h.add_(1)
    with pytest.raises(RuntimeError, match=r"saved for backward by Mul.*modified by an in-place"):
        y.backward()
    assert x.grad is None


def test_saved_output_modified_in_place_raises():
    x = leaf([1.0, 2.0])
    y = x.exp()  # Exp saves its output
    z = y.sum()
    with mg.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match=r"Exp \(its output\)"):
        z.backward()


def test_views_share_the_version_counter():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    h = x * 1
    v = h[0]
    assert v._vc is h._vc
    y = (h.sin()).sum()  # Sin saves h
    with mg.no_grad():
        v.mul_(3)        # written through the view
    with pytest.raises(RuntimeError, match="Sin"):
        y.backward()
    x2 = leaf([[1.0, 2.0], [3.0, 4.0]])
    h2 = x2 * 1
    v2 = h2.transpose(0, 1)
    y2 = (v2.cos()).sum()  # Cos saves the view
    with mg.no_grad():
        h2.add_(1)         # written through the base
    with pytest.raises(RuntimeError, match="Cos"):
        y2.backward()


def test_unsaved_inputs_may_be_modified():
    x = leaf([1.0, 2.0])
    h = x * 1
    y = (h + 1).sum()  # Add saves nothing
    with mg.no_grad():
        h.add_(5)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


# ---------------------------------------------------------------------- in-place ops
def test_inplace_on_non_leaf_gradients():
    def fn(a, b):
        h = a * 2
        h.add_(b)          # 2a + b
        h.mul_(a)          # (2a + b) a
        h.sub_(b, alpha=0.5)
        h.div_(b)
        return h

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.uniform(0.5, 2.0, (2, 3))
    check_op(fn, lambda a, b: ((2 * a + b) * a - 0.5 * b) / b, [a, b])


def test_inplace_setitem_gradients():
    def fn(a, b):
        h = a * 1
        h[0] = b[1] * 2     # value requiring grad
        h[:, 1] = 0.0       # a constant
        h[mg.tensor([2, 0])] = h[mg.tensor([1, 1])] * 3  # read with a repeated index
        return h

    def ref(a, b):
        h = a.copy()
        h[0] = b[1] * 2
        h[:, 1] = 0.0
        h[[2, 0]] = h[[1, 1]] * 3
        return h

    rng = np.random.default_rng(1)
    check_op(fn, ref, [rng.standard_normal((3, 4)), rng.standard_normal((2, 4))],
             noncontig=False)


def test_inplace_clamp_fill_zero_copy():
    def fn(a, b):
        h = a * 1
        h.clamp_(-0.5, 0.5)
        g = b * 1
        g.copy_(h)
        k = a * 1
        k.fill_(2.0)
        z = b * 1
        z.zero_()
        return g + k + z

    x = np.array([-1.0, -0.2, 0.3, 0.9])
    check_op(fn, lambda a, b: np.clip(a, -0.5, 0.5) + 2.0, [x, x + 1])


def test_copy_fill_zero_do_not_read_old_values():
    t = mg.tensor([np.nan, np.inf, -np.inf])  # e.g. garbage from mg.empty
    t.copy_(mg.tensor([1.0, 2.0, 3.0]))
    assert t.tolist() == [1.0, 2.0, 3.0]
    t.copy_(mg.tensor([np.nan]))
    t.copy_(5.0)  # broadcast python scalar
    assert t.tolist() == [5.0] * 3
    w = leaf([1.0, 2.0])
    h = w * mg.tensor([1.0, np.nan], dtype=mg.float64)
    h.copy_(w * 3)
    assert h.tolist() == [3.0, 6.0]
    h.sum().backward()
    assert w.grad.tolist() == [3.0, 3.0]  # the NaN path was overwritten and carries nothing
    for make in (lambda h: h.zero_(), lambda h: h.fill_(2.0)):
        h = mg.tensor([np.inf, np.nan], dtype=mg.float64) + w
        make(h)
        assert np.isfinite(h.detach().numpy()).all() and h.requires_grad


def test_inplace_after_saved_output_raises():
    x = leaf([1.0, 2.0])
    h = x.exp()  # Exp saves its output, which add_ overwrites
    h.add_(1)
    with pytest.raises(RuntimeError, match="Exp"):
        h.sum().backward()


def test_backward_on_a_leaf_root():
    x = leaf([1.0, 2.0])
    x.backward(gradient=mg.tensor([3.0, 4.0], dtype=mg.float64))
    assert x.grad.tolist() == [3.0, 4.0]


def test_inplace_on_plain_tensor_with_grad_argument():
    buf = mg.zeros(3, dtype=mg.float64)
    w = leaf([1.0, 2.0, 3.0])
    buf.add_(w * 2)
    assert buf.requires_grad and not buf.is_leaf
    buf.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0, 2.0])
    out = mg.zeros(2, 3, dtype=mg.float64)
    out[1] = w
    (out * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [5.0, 5.0, 5.0])


def test_leaf_requiring_grad_in_place_raises_and_no_grad_allows_it():
    w = leaf([1.0, 2.0])
    for op in (lambda: w.add_(1), lambda: w.mul_(2), lambda: w.zero_(),
               lambda: w.__setitem__(0, 5.0), lambda: w.fill_(1.0)):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
            op()
        assert w.tolist() == [1.0, 2.0]
    with mg.no_grad():
        w.sub_(w * 0.5)
        w[1] = 7.0
    assert w.tolist() == [0.5, 7.0] and w.is_leaf and w.requires_grad


def test_inplace_on_view_while_recording_raises():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    h = x * 1
    with pytest.raises(RuntimeError, match="view"):
        h[0].mul_(2)
    with pytest.raises(RuntimeError, match="view"):
        x[0].add_(1)  # a view of a leaf
    assert h.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_inplace_dtype_rules():
    t = mg.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        t.add_(0.5)
    f = mg.tensor([1.0, 2.0])
    f.add_(mg.tensor([1, 1]))  # int into float is fine
    assert f.dtype == mg.float32 and f.tolist() == [2.0, 3.0]


# ---------------------------------------------------------------------- anomaly mode
def test_anomaly_names_op_with_nan_in_forward():
    x = leaf([-1.0, 4.0])
    with np.errstate(all="ignore"), mg.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="Sqrt produced NaN in its forward"):
            x.sqrt()
        with pytest.raises(RuntimeError, match="Log produced inf in its forward"):
            (x * 0 + 1e-400).log()
    assert not mg.autograd.is_anomaly_enabled()


def test_anomaly_names_op_with_inf_in_backward():
    x = leaf([0.0, 4.0])
    y = x.sqrt().sum()  # forward is finite, d sqrt / dx at 0 is inf
    with np.errstate(all="ignore"), mg.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="Sqrt produced inf in its backward"):
            y.backward()
    assert x.grad is None


def test_anomaly_off_lets_nan_through():
    x = leaf([0.0])
    with np.errstate(all="ignore"):
        x.sqrt().sum().backward()
    assert np.isinf(x.grad.item())


# ---------------------------------------------------------------------- retain_grad, hooks
def test_retain_grad():
    x = leaf([1.0, 2.0])
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), 18 * x.detach().numpy())
    x.retain_grad()  # no-op on leaves


def test_non_leaf_grad_is_not_kept_by_default():
    x = leaf([1.0])
    h = x * 3
    (h * h).sum().backward()
    assert h.grad is None


def test_register_hook_on_leaf_sees_total_gradient_once_and_can_replace_it():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * x + x).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * np.array([1.0, 2.0]) + 1)
    x.grad = None
    handle = x.register_hook(lambda g: g * 0 + 1)
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])
    handle.remove()
    x.grad = None
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_register_hook_on_non_leaf_changes_what_flows_on():
    x = leaf([1.0, 2.0])
    h = x * 2
    h.register_hook(lambda g: g * 10)
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [20.0, 20.0])


def test_register_hook_needs_requires_grad():
    with pytest.raises(RuntimeError, match="doesn't require grad"):
        mg.ones(2).register_hook(lambda g: g)


# ---------------------------------------------------------------------- gradcheck
class BadSquare(Function):
    """x² with a deliberately wrong backward (3x instead of 2x)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        return g * 3 * self.x


class GoodSquare(BadSquare):
    def backward(self, g):
        return g * 2 * self.x


def test_gradcheck_catches_a_wrong_backward():
    x = leaf([0.5, -1.5, 2.0])
    assert gradcheck(GoodSquare.apply, [x])
    with pytest.raises(AssertionError, match="disagrees with central differences"):
        gradcheck(BadSquare.apply, [x])
    assert gradcheck(BadSquare.apply, [x], raise_exception=False) is False


def test_check_op_fails_for_a_wrong_backward():
    with pytest.raises(AssertionError):
        check_op(BadSquare.apply, np.square, [np.array([0.5, -1.5, 2.0])])


def test_check_op_float32_tolerance_is_the_documented_one():
    # |err| ≤ eps32·(1 + |ref|), eps32 = 2e-5: a float32 result off by 5e-5 relative (what a
    # float16 intermediate or a wrong constant gives) fails; before, a stray factor 10 let it by
    x = np.array([[1.5, -2.0, 3.0], [0.75, -1.25, 2.5]])

    def slightly_off(t):
        return t * (1 + 5e-5) if t.dtype == mg.float32 else t * 1.0

    with pytest.raises(AssertionError, match="float32 forward"):
        check_op(slightly_off, lambda a: a, [x], grad=False)
    check_op(lambda t: t * 1.0, lambda a: a, [x], grad=False)


def test_gradcheck_multiple_outputs_with_a_non_differentiable_one():
    x = leaf([[3.0, 1.0], [0.5, 2.0]])
    assert gradcheck(lambda t: t.max(1), [x])  # (values, int64 indices): indices carry no grad
    assert gradcheck(lambda t: (t.argmax(1), t.exp()), [x])  # the integer output first


def outside_autograd(t):
    """exp(t) built from the raw array: the right value, no graph behind it."""
    return mg.tensor(np.exp(t.detach().numpy()))


@pytest.mark.parametrize("fn,ref", [
    (outside_autograd, np.exp),                                      # the only output
    (lambda t: (t.exp(), t.detach() * 2), lambda a: (np.exp(a), 2 * a)),   # a second one
    (lambda t: (t.detach() * 2, t.exp()), lambda a: (2 * a, np.exp(a))),   # the first one
], ids=["outside-autograd", "detached-second", "detached-first"])
def test_gradcheck_refuses_a_float_output_cut_off_from_the_graph(fn, ref):
    # before: outputs that did not require grad were dropped from both sides of the check, so
    # analytic and numeric gradients were both zero and such an op passed
    x = leaf([[3.0, 1.0], [0.5, 2.0]])
    with pytest.raises(AssertionError, match="cut off from the autograd graph"):
        gradcheck(fn, [x])
    # the op helper every op test uses: the forward matches, the gradient check refuses
    with pytest.raises(AssertionError, match="cut off from the autograd graph"):
        check_op(fn, ref, [np.array([[3.0, 1.0], [0.5, 2.0]])], float32=False)


def test_gradcheck_numeric_side_covers_every_output():
    # the output requires grad (through b * 0) but backward reaches b only through that term:
    # d(a·b)/db = a shows up in the central differences alone
    x, w = leaf([0.5, -1.5]), leaf([2.0, 3.0])
    with pytest.raises(AssertionError, match="input 1 disagrees"):
        gradcheck(lambda a, b: (a.exp(), a * b.detach() + b * 0), [x, w])
    assert gradcheck(lambda a, b: (a.exp(), a * b), [x, w])


# ---------------------------------------------------------------------- GPU variant
def test_backward_on_device(device):
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((3, 4)), device=device, requires_grad=True)
    w = mg.tensor(rng.standard_normal((4, 2)), device=device, requires_grad=True)
    ((x @ w).tanh() * x.sum(1, keepdim=True)).sum().backward()
    assert x.grad.device == device and w.grad.device == device
    assert gradcheck(lambda a, b: ((a @ b).tanh() * a.sum(1, keepdim=True)), [x, w])


def test_augmented_assignment_is_in_place():
    # under no_grad, p -= lr * g must update the very tensor a model holds (PyTorch semantics)
    p = mg.tensor([1.0, 2.0], requires_grad=True)
    same = p
    with mg.no_grad():
        p -= 0.5 * mg.tensor([2.0, 2.0])
        p *= 2
    assert same is p
    np.testing.assert_allclose(p.detach().numpy(), [0.0, 2.0])
    # outside no_grad the in-place op on a leaf that requires grad is refused, nothing changed
    with pytest.raises(RuntimeError, match="leaf"):
        p += 1
    np.testing.assert_allclose(p.detach().numpy(), [0.0, 2.0])
    # on a non-leaf it is recorded: d/dx sum((x * 3) += x) = 4
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y += x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])


def test_gradcheck_refuses_a_nan_gradient():
    """err > tol is False for NaN: a backward that produces NaN must still fail the check."""
    from minigen.autograd import Function, gradcheck

    class NaNBackward(Function):
        def forward(self, a):            # arrays in and out
            return a * 2.0

        def backward(self, g):
            return g * float("nan")

    x = mg.tensor(np.array([0.5, -1.0]), dtype=mg.float64, requires_grad=True)
    assert gradcheck(lambda a: NaNBackward.apply(a), [x], raise_exception=False) is False
