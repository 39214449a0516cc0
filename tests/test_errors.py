"""Every user error raises a message that names the problem, before anything changes.

A second device is simulated without CuPy: ``Tensor._wrap(array, device("cuda"))`` labels a
numpy array as a cuda tensor, which is all the device checks look at.
"""
import contextlib

import numpy as np
import pytest

import minigen as mg
from minigen import Tensor


def fake_cuda(values, dtype=np.float32):
    return Tensor._wrap(np.asarray(values, dtype=dtype), mg.device("cuda"))


@contextlib.contextmanager
def unchanged(*tensors):
    """Assert that the tensors' values, version counters and .grad survive the block."""
    before = [(t.data.copy(), t._vc[0], None if t.grad is None else t.grad.data.copy())
              for t in tensors]
    yield
    for t, (data, version, grad) in zip(tensors, before):
        np.testing.assert_array_equal(t.data, data)
        assert t._vc[0] == version, "version counter moved"
        if grad is None:
            assert t.grad is None, ".grad appeared"
        else:
            np.testing.assert_array_equal(t.grad.data, grad)


# ---------------------------------------------------------------------- broadcasting
@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
    lambda a, b: a ** b, lambda a, b: a == b, lambda a, b: a < b, mg.maximum, mg.minimum,
    lambda a, b: mg.where(a > 0, a, b), lambda a, b: a.lerp(b, 0.5),
])
def test_shapes_that_cannot_broadcast(op):
    a, b = mg.ones(2, 3), mg.ones(4)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(4,\)|\(4,\).*\(2, 3\)"):
        op(a, b)


def test_inplace_broadcast_error_changes_nothing():
    x = mg.ones(2, 3)
    with unchanged(x):
        with pytest.raises(RuntimeError, match=r"\(2, 3\) and \(4,\)"):
            x.add_(mg.ones(4))
        with pytest.raises(RuntimeError, match="does not fit"):
            x.add_(mg.ones(4, 2, 3))  # broadcasts, but the result is larger than x
        with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
            x.mul_(mg.ones(3, 3))


def test_masked_fill_mask_shape():
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(3, 1\)|\(3, 1\).*\(2, 3\)"):
        mg.ones(2, 3).masked_fill(mg.ones(3, 1, dtype=mg.bool), 0.0)
    with pytest.raises(TypeError, match="bool"):
        mg.ones(2).masked_fill(mg.ones(2), 0.0)


# ---------------------------------------------------------------------- devices
@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a / b,
    lambda a, b: a @ b, lambda a, b: mg.matmul(a, b), lambda a, b: mg.cat([a, b]),
    lambda a, b: mg.stack([a, b]), lambda a, b: mg.maximum(a, b), lambda a, b: a < b,
    lambda a, b: mg.linear(a, b), lambda a, b: mg.einsum("ij,jk->ik", a, b),
])
def test_mismatched_devices_name_both(op):
    a = mg.ones(2, 2)
    b = fake_cuda(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        op(a, b)
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        op(b, a)


def test_device_errors_change_nothing():
    x = mg.ones(3)
    g = fake_cuda([1.0, 1.0, 1.0])
    with unchanged(x):
        with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
            x.add_(g)
        with pytest.raises(RuntimeError, match=r"cuda:0.*cpu"):
            x[0] = g[0]
    w = mg.ones(3, requires_grad=True)
    y = w * 2
    with unchanged(w):
        with pytest.raises(RuntimeError, match=r"cuda:0.*cpu"):
            y.backward(gradient=g)


# ---------------------------------------------------------------------- dtypes
def test_matmul_linear_einsum_mismatched_dtypes():
    a32, a64 = mg.ones(2, 3), mg.ones(3, 2, dtype=mg.float64)
    for op in (lambda: a32 @ a64, lambda: mg.mm(a32, a64), lambda: mg.bmm(a32[None], a64[None]),
               lambda: mg.einsum("ij,jk", a32, a64)):
        with pytest.raises(TypeError, match=r"float32.*float64"):
            op()
    with pytest.raises(TypeError, match=r"float32.*float64"):
        mg.linear(mg.ones(4, 3), mg.ones(2, 3, dtype=mg.float64))
    with pytest.raises(TypeError, match=r"float32.*float64"):
        mg.linear(mg.ones(4, 3), mg.ones(2, 3), mg.ones(2, dtype=mg.float64))


def test_floating_only_ops():
    with pytest.raises(TypeError, match="int64"):
        mg.tensor([1, 2]).mean()


# ---------------------------------------------------------------------- backward
def test_backward_through_freed_graph():
    x = mg.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with unchanged(x):
        with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
            y.backward()


def test_backward_of_non_scalar_without_gradient():
    x = mg.ones(2, 3, requires_grad=True)
    with unchanged(x):
        with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2, 3\)"):
            (x * 2).backward()
        with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\).*\(2, 3\)"):
            (x * 2).backward(gradient=mg.ones(3))
        with pytest.raises(RuntimeError, match="scalar outputs"):
            mg.autograd.grad(x * 2, x)


def test_backward_of_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.ones(2).sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.autograd.grad(mg.ones(2).sum(), mg.ones(2, requires_grad=True))


def test_integer_tensors_cannot_require_grad():
    for make in (lambda: mg.tensor([1, 2], requires_grad=True),
                 lambda: mg.tensor([1, 2]).requires_grad_(),
                 lambda: mg.zeros(2, dtype=mg.int32, requires_grad=True),
                 lambda: mg.tensor([True], requires_grad=True)):
        with pytest.raises(RuntimeError, match="floating point"):
            make()


def test_requires_grad_off_on_non_leaf():
    h = mg.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        h.requires_grad_(False)


# ---------------------------------------------------------------------- dims
@pytest.mark.parametrize("op", [
    lambda t: t.sum(2), lambda t: t.sum(-3), lambda t: t.mean((0, 5)), lambda t: t.softmax(2),
    lambda t: t.transpose(0, 2), lambda t: t.unsqueeze(4), lambda t: t.max(2),
    lambda t: t.argmax(-3), lambda t: mg.cat([t, t], 2), lambda t: t.flip(2), lambda t: t.cumsum(7),
    lambda t: t.squeeze(2), lambda t: t.var(3), lambda t: t.split(1, 2), lambda t: t.roll(1, 2),
    lambda t: t.permute(0, 2), lambda t: t.gather(2, mg.zeros(2, 3, dtype=mg.int64)),
])
def test_dim_out_of_range(op):
    t = mg.ones(2, 3)
    with pytest.raises(IndexError, match=r"dim -?\d+ is out of range for a tensor of [23] dim"):
        op(t)


@pytest.mark.parametrize("op", [
    lambda t: t.sum((0, 0)), lambda t: t.sum((1, -2)), lambda t: t.amax((0, -3)),
    lambda t: t.permute(0, 0, 1), lambda t: t.flip((1, 1)), lambda t: t.var((2, 2)),
])
def test_repeated_dims(op):
    t = mg.ones(2, 3, 4)
    with pytest.raises(RuntimeError, match="twice|repeat"):
        op(t)


def test_dim_must_be_an_int():
    with pytest.raises(TypeError, match="dim must be an int"):
        mg.ones(2).sum(1.0)


# ---------------------------------------------------------------------- shapes
@pytest.mark.parametrize("shape", [(4, 4), (5,), (-1, 5), (-1, -1), (7, -1), (0, -1), (-2, -3),
                                   (-3, -2)])
def test_reshape_to_incompatible_size(shape):
    t = mg.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"invalid for a tensor of 6 elements \(shape \(2, 3\)"):
        t.reshape(shape)
    with pytest.raises(RuntimeError, match="invalid"):
        t.view(*shape)


def test_other_shape_errors_name_the_shapes():
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(2, 3\).*3 != 2"):
        mg.ones(2, 3) @ mg.ones(2, 3)
    with pytest.raises(RuntimeError, match="at least 1 dimension"):
        mg.tensor(1.0) @ mg.ones(1)
    with pytest.raises(RuntimeError, match=r"batch dims.*\(2,\).*\(3,\)"):
        mg.ones(2, 1, 2) @ mg.ones(3, 2, 1)
    with pytest.raises(RuntimeError, match=r"expand.*\(2, 3\)"):
        mg.ones(2, 3).expand(4, 3)
    with pytest.raises(RuntimeError, match=r"stack.*\(2,\).*\(3,\)"):
        mg.stack([mg.ones(2), mg.ones(3)])
    with pytest.raises(RuntimeError, match=r"cat.*\(2, 3\).*\(2, 4\)"):
        mg.cat([mg.ones(2, 3), mg.ones(2, 4)], 0)
    with pytest.raises(RuntimeError, match="zero-dimensional"):
        mg.cat([mg.tensor(1.0), mg.tensor(2.0)])
    with pytest.raises(RuntimeError, match=r"amax.*empty.*\(0, 2\)"):
        mg.zeros(0, 2).amax(0)
    with pytest.raises(RuntimeError, match="empty"):
        mg.zeros(0).max()
    with pytest.raises(RuntimeError, match=r"split.*\[1, 1\].*3"):
        mg.ones(3).split([1, 1])
    with pytest.raises(ValueError, match="reflect"):
        mg.pad(mg.ones(1, 2), (2, 0), mode="reflect")
    with pytest.raises(RuntimeError, match=r"linear.*\(4, 3\).*\(2, 5\)"):
        mg.linear(mg.ones(4, 3), mg.ones(2, 5))
    with pytest.raises(RuntimeError, match="einsum"):
        mg.einsum("ij,jk", mg.ones(2, 3))


# ---------------------------------------------------------------------- indexing
def test_bad_index():
    t = mg.ones(2, 3)
    with pytest.raises(IndexError, match=r"index \[5\]|index 5.*shape \(2, 3\)"):
        t[5]
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        t[0, 3]
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        t[mg.tensor([0, 2])]
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        t[mg.ones(3, dtype=mg.bool)]  # mask of the wrong size
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        t[1.5]


def test_bad_index_assignment_changes_nothing():
    t = mg.zeros(2, 3)
    with unchanged(t):
        with pytest.raises(RuntimeError, match=r"shape \(4,\).*\(2, 3\)"):
            t[0] = mg.ones(4)
        with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
            t[7] = 1.0
    h = mg.ones(2, 3, requires_grad=True) * 1
    with unchanged(h):
        with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
            h[0] = mg.ones(5, requires_grad=True)


def test_bad_gather_scatter_index_select_one_hot():
    t = mg.ones(2, 3)
    with pytest.raises(IndexError, match="out of bounds for dim 1 of size 3"):
        t.gather(1, mg.tensor([[0, 3]]))
    with pytest.raises(TypeError, match="integer tensor"):
        t.gather(1, mg.tensor([[0.0]]))
    with pytest.raises(RuntimeError, match="index has 1 dims but the tensor has 2"):
        t.gather(1, mg.tensor([0]))
    with pytest.raises(IndexError, match="out of bounds"):
        t.scatter_add(0, mg.tensor([[2, 0, 0]]), mg.ones(1, 3))
    with pytest.raises(RuntimeError, match="larger than src"):
        t.scatter_add(0, mg.tensor([[1, 0, 0]]), mg.ones(1, 2))
    with pytest.raises(IndexError, match="out of range for dim 0 of size 2"):
        t.index_select(0, mg.tensor([0, 2]))
    with pytest.raises(TypeError, match="1-D integer"):
        t.index_select(0, mg.tensor([[0]]))
    with pytest.raises(RuntimeError, match=r"\[0, 3\)"):
        mg.one_hot(mg.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="integer"):
        mg.one_hot(mg.tensor([0.0]))


# ---------------------------------------------------------------------- conversions
def test_conversion_errors():
    with pytest.raises(RuntimeError, match=r"one element.*\(2,\)"):
        mg.ones(2).item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(mg.ones(2))
    with pytest.raises(TypeError, match="0-d"):
        len(mg.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        list(mg.tensor(1.0))
    with pytest.raises(TypeError, match="cuda:0.*cpu"):
        fake_cuda([1.0]).numpy()
    with pytest.raises(TypeError, match="integer tensors of a single element"):
        [1, 2][mg.tensor([1.0])]
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        mg.ones(2, device="gpu")
    with pytest.raises(TypeError, match="unsupported operand type"):
        mg.ones(2) + "a"
