"""Tensor construction, dtypes, conversions, DLPack, random numbers, repr."""
import numpy as np
import pytest

import minigen as mg
from minigen import dtypes


# ---------------------------------------------------------------------- creation
def test_zeros_ones_full_empty():
    assert mg.zeros(2, 3).shape == (2, 3) and mg.zeros(2, 3).dtype == mg.float32
    assert mg.zeros((2, 3)).tolist() == [[0.0] * 3] * 2
    assert mg.zeros([4]).shape == (4,)
    assert mg.zeros(()).shape == () and mg.zeros().shape == ()
    assert mg.ones(3, dtype=mg.int64).tolist() == [1, 1, 1]
    assert mg.full((2,), 1.5).tolist() == [1.5, 1.5] and mg.full((2,), 1.5).dtype == mg.float32
    assert mg.full((2,), 7).dtype == mg.int64        # PyTorch infers from the fill value
    assert mg.full((2,), True).dtype == mg.bool
    assert mg.full(3, 2.0, dtype=mg.float64).dtype == mg.float64
    e = mg.empty(2, 5, dtype=mg.float16)
    assert e.shape == (2, 5) and e.dtype == mg.float16
    assert mg.zeros(0, 3).numel() == 0


def test_creation_requires_grad():
    t = mg.zeros(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    with pytest.raises(RuntimeError, match="floating point"):
        mg.zeros(2, dtype=mg.int64, requires_grad=True)


def test_arange():
    assert mg.arange(5).tolist() == [0, 1, 2, 3, 4] and mg.arange(5).dtype == mg.int64
    assert mg.arange(2, 8, 3).tolist() == [2, 5]
    assert mg.arange(5, 0, -2).tolist() == [5, 3, 1]
    f = mg.arange(0.0, 1.0, 0.25)
    assert f.dtype == mg.float32 and f.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert mg.arange(0, 1, 0.5).dtype == mg.float32
    assert mg.arange(3, dtype=mg.float64).dtype == mg.float64
    with pytest.raises(ValueError, match="step"):
        mg.arange(0, 3, 0)


def test_linspace_eye():
    lin = mg.linspace(0, 1, 5)
    assert lin.dtype == mg.float32
    np.testing.assert_allclose(lin.numpy(), np.linspace(0, 1, 5))
    assert mg.linspace(-1, 1, 3, dtype=mg.float64).tolist() == [-1.0, 0.0, 1.0]
    np.testing.assert_array_equal(mg.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(mg.eye(2, 3).numpy(), np.eye(2, 3))
    assert mg.eye(2, dtype=mg.int64).dtype == mg.int64


def test_random_creation_shapes_dtypes_ranges():
    mg.manual_seed(0)
    r = mg.rand(1000)
    assert r.dtype == mg.float32 and 0 <= r.numpy().min() and r.numpy().max() < 1
    n = mg.randn(200, 50, dtype=mg.float64)
    assert n.dtype == mg.float64
    assert abs(n.numpy().mean()) < 0.05 and abs(n.numpy().std() - 1) < 0.05
    assert mg.randn(3, dtype=mg.float16).dtype == mg.float16
    k = mg.randint(2, 5, (100,))
    assert k.dtype == mg.int64 and set(k.tolist()) <= {2, 3, 4}
    assert mg.randint(3, size=(2, 2)).shape == (2, 2)
    p = mg.randperm(10)
    assert p.dtype == mg.int64 and sorted(p.tolist()) == list(range(10))
    nrm = mg.normal(2.0, 0.5, (4000,))
    assert abs(nrm.numpy().mean() - 2.0) < 0.05
    with pytest.raises(ValueError, match="high"):
        mg.randint(5, 5, (2,))


def test_like_functions():
    x = mg.ones(2, 3, dtype=mg.float64)
    for fn in (mg.zeros_like, mg.ones_like, mg.empty_like, mg.rand_like, mg.randn_like):
        y = fn(x)
        assert y.shape == (2, 3) and y.dtype == mg.float64 and y.device == x.device
    assert mg.zeros_like(x, dtype=mg.int32).dtype == mg.int32
    assert mg.full_like(x, 4.0).tolist() == [[4.0] * 3] * 2
    assert mg.ones_like(x, requires_grad=True).requires_grad
    r = mg.randint_like(mg.zeros(5, dtype=mg.int64), 0, 3)
    assert r.dtype == mg.int64 and r.shape == (5,)


def test_tensor_from_data_infers_pytorch_dtypes():
    assert mg.tensor([1.0, 2.0]).dtype == mg.float32
    assert mg.tensor([1, 2]).dtype == mg.int64
    assert mg.tensor([True]).dtype == mg.bool
    assert mg.tensor(3.5).shape == () and mg.tensor(3.5).dtype == mg.float32
    assert mg.tensor(np.zeros(2, dtype=np.float64)).dtype == mg.float64  # numpy keeps its dtype
    assert mg.tensor(np.float64(1.5)).dtype == mg.float64
    assert mg.tensor(np.arange(3, dtype=np.int32)).dtype == mg.int32
    assert mg.tensor([[1, 2], [3, 4]], dtype=mg.float16).dtype == mg.float16
    with pytest.raises(TypeError):
        mg.tensor([[1, 2], [3]])  # ragged


def test_tensor_copies_and_from_numpy_shares():
    a = np.array([1.0, 2.0])
    t = mg.tensor(a)
    a[0] = 9
    assert t.tolist() == [1.0, 2.0]
    s = mg.from_numpy(a)
    a[1] = 7
    assert s.tolist() == [9.0, 7.0]
    s.add_(1)
    assert a.tolist() == [10.0, 8.0]
    assert mg.as_tensor(a).data is a
    with pytest.raises(TypeError, match="numpy.ndarray"):
        mg.from_numpy([1, 2])


def test_tensor_constructor_class():
    t = mg.Tensor([1.0, 2.0], requires_grad=True)
    assert isinstance(t, mg.Tensor) and t.requires_grad and t.dtype == mg.float32
    assert mg.is_tensor(t) and not mg.is_tensor(np.zeros(1))


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [mg.float32, mg.float64, mg.float16, mg.int32, mg.int64,
                                   mg.bool, mg.int8, mg.uint8, mg.int16])
def test_dtypes_round_trip(dtype):
    t = mg.ones(3, dtype=dtype)
    assert t.dtype == dtype and t.numpy().dtype == dtype
    assert mg.zeros(2, dtype=str(dtype) if dtype != mg.bool else "bool").dtype == dtype


def test_default_dtype_is_float32_and_settable():
    assert mg.get_default_dtype() == mg.float32
    mg.set_default_dtype(mg.float64)
    try:
        assert mg.zeros(2).dtype == mg.float64 and mg.tensor([1.5]).dtype == mg.float64
    finally:
        mg.set_default_dtype(mg.float32)
    with pytest.raises(TypeError, match="floating"):
        mg.set_default_dtype(mg.int64)


def test_dtype_names_and_python_types():
    assert dtypes.as_dtype("float") == mg.float32 and dtypes.as_dtype("long") == mg.int64
    assert dtypes.as_dtype(float) == mg.float32 and dtypes.as_dtype(int) == mg.int64
    assert dtypes.as_dtype(bool) == mg.bool and dtypes.as_dtype(np.float16) == mg.float16
    with pytest.raises(TypeError, match="unknown dtype"):
        dtypes.as_dtype("float7")


def test_to_dtype_and_shortcuts():
    x = mg.tensor([1.7, -2.2])
    assert x.to(mg.float64).dtype == mg.float64
    assert x.to("float16").dtype == mg.float16
    assert x.to(mg.int64).tolist() == [1, -2]
    assert x.to(mg.float32) is x  # no-op
    assert x.to(mg.float32, copy=True) is not x
    assert x.double().dtype == mg.float64 and x.half().dtype == mg.float16
    assert x.long().dtype == mg.int64 and x.int().dtype == mg.int32
    assert x.bool().tolist() == [True, True] and x.float().dtype == mg.float32
    assert x.type_as(mg.zeros(1, dtype=mg.float64)).dtype == mg.float64
    assert x.to(mg.zeros(1, dtype=mg.float16)).dtype == mg.float16


def test_to_dtype_is_differentiable():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(mg.float64) * 3
    y.sum().backward()
    assert x.grad.dtype == mg.float32 and x.grad.tolist() == [3.0, 3.0]


def test_to_cpu_is_a_no_op_on_cpu():
    x = mg.tensor([1.0])
    assert x.to("cpu") is x and x.cpu() is x and x.device == "cpu"
    assert x.to(mg.device("cpu"), mg.float64).dtype == mg.float64
    assert not x.is_cuda


def test_bfloat16_with_ml_dtypes():
    pytest.importorskip("ml_dtypes")
    x = mg.tensor([1.0, 2.5, -3.0]).to(mg.bfloat16)
    assert x.dtype == mg.bfloat16 and x.is_floating_point()
    assert mg.zeros(2, dtype="bfloat16").dtype == mg.bfloat16
    assert (x * 2.0).dtype == mg.bfloat16
    assert (x + mg.ones(3, dtype=mg.float16)).dtype == mg.float32  # PyTorch's rule
    assert (x + mg.ones(3)).dtype == mg.float32
    assert (x + mg.ones(3, dtype=mg.int64)).dtype == mg.bfloat16
    np.testing.assert_allclose(x.to(mg.float32).numpy(), [1.0, 2.5, -3.0])
    w = mg.tensor([1.0, 2.0], dtype=mg.bfloat16, requires_grad=True)
    (w * w).sum().backward()
    assert w.grad.dtype == mg.bfloat16
    np.testing.assert_allclose(w.grad.to(mg.float32).numpy(), [2.0, 4.0])


def test_bfloat16_without_ml_dtypes_raises_clearly(monkeypatch):
    missing = dtypes._UnavailableDtype()
    monkeypatch.setattr(dtypes, "_HAVE_BF16", False)
    monkeypatch.setattr(dtypes, "bfloat16", missing)
    for make in (lambda: mg.zeros(2, dtype=missing), lambda: mg.ones(2).to(missing),
                 lambda: mg.tensor([1.0], dtype="bfloat16")):
        with pytest.raises(TypeError, match="pip install ml_dtypes"):
            make()


# ---------------------------------------------------------------------- conversions
def test_numpy_item_tolist_asarray():
    x = mg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(x.numpy(), np.ndarray) and np.shares_memory(x.numpy(), x.data)
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert mg.tensor(2.5).item() == 2.5 and isinstance(mg.tensor(3).item(), int)
    assert mg.tensor([[7.0]]).item() == 7.0
    with pytest.raises(RuntimeError, match="one element"):
        x.item()
    a = np.asarray(x)
    assert a.shape == (2, 2) and np.shares_memory(a, x.data)
    c = np.array(x)  # np.array copies
    assert not np.shares_memory(c, x.data)
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    assert float(mg.tensor([1.5])) == 1.5 and int(mg.tensor(3)) == 3
    assert bool(mg.tensor([1])) and not bool(mg.tensor(0.0))
    assert [10, 20, 30][mg.tensor(1)] == 20  # __index__


def test_numpy_of_tensor_requiring_grad_raises():
    x = mg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert x.detach().numpy().tolist() == [1.0]


def test_dlpack_round_trip_is_zero_copy():
    x = mg.tensor([1.0, 2.0, 3.0])
    a = np.from_dlpack(x)
    assert np.shares_memory(a, x.data)
    a[0] = 10
    assert x.tolist()[0] == 10
    back = mg.from_dlpack(a)
    assert np.shares_memory(back.data, a) and back.dtype == mg.float32
    arr = np.arange(6.0).reshape(2, 3)
    t = mg.from_dlpack(arr)
    assert np.shares_memory(t.data, arr) and t.shape == (2, 3)
    assert x.__dlpack_device__()[0] == 1  # kDLCPU


def test_iteration_yields_views_of_rows():
    x = mg.tensor([[1.0, 2.0], [3.0, 4.0]])
    rows = list(x)
    assert len(rows) == 2 and rows[1].tolist() == [3.0, 4.0]
    rows[0].mul_(10)
    assert x.tolist()[0] == [10.0, 20.0]


def test_shape_helpers():
    x = mg.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.size() == (2, 3, 4) and x.size(-1) == 4
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.stride() == (12, 4, 1) and x.transpose(0, 2).stride() == (1, 4, 12)
    assert x.is_contiguous() and not x.transpose(0, 1).is_contiguous()
    with pytest.raises(TypeError, match="0-d"):
        len(mg.tensor(1.0))


# ---------------------------------------------------------------------- random generators
def test_manual_seed_reproducible():
    mg.manual_seed(123)
    a = mg.randn(5).tolist(), mg.rand(3).tolist(), mg.randint(0, 100, (4,)).tolist()
    mg.manual_seed(123)
    b = mg.randn(5).tolist(), mg.rand(3).tolist(), mg.randint(0, 100, (4,)).tolist()
    assert a == b
    mg.manual_seed(124)
    c = mg.randn(5).tolist()
    assert c != a[0]


def test_generator_objects_are_independent_and_reproducible():
    g1 = mg.Generator().manual_seed(7)
    g2 = mg.Generator().manual_seed(7)
    assert mg.randn(4, generator=g1).tolist() == mg.randn(4, generator=g2).tolist()
    mg.manual_seed(0)
    x = mg.rand(3, generator=g1)
    y = mg.rand(3, generator=mg.Generator().manual_seed(8))
    assert x.tolist() != y.tolist()
    assert g1.initial_seed() == 7
    assert mg.randperm(6, generator=mg.Generator().manual_seed(1)).tolist() == \
        mg.randperm(6, generator=mg.Generator().manual_seed(1)).tolist()


def test_rng_state_save_restore():
    mg.manual_seed(5)
    state = mg.get_rng_state()
    a = mg.randn(3).tolist()
    mg.set_rng_state(state)
    assert mg.randn(3).tolist() == a
    g = mg.Generator().manual_seed(1)
    s = g.get_state()
    first = mg.rand(2, generator=g).tolist()
    g.set_state(s)
    assert mg.rand(2, generator=g).tolist() == first


# ---------------------------------------------------------------------- repr
def test_repr():
    assert repr(mg.tensor([1.0, 2.5])) == "tensor([1. , 2.5])"
    assert repr(mg.tensor([1, 2])) == "tensor([1, 2])"
    assert "dtype=float64" in repr(mg.tensor([1.0], dtype=mg.float64))
    assert "requires_grad=True" in repr(mg.tensor([1.0], requires_grad=True))
    assert "grad_fn=<Mul>" in repr(mg.tensor([1.0], requires_grad=True) * 2)
    assert repr(mg.tensor(3.0)) == "tensor(3.)"
    assert "..." in repr(mg.zeros(1000))  # long tensors are summarised
    assert repr(mg.device("cuda:1")) == "device('cuda:1')" and str(mg.device("cpu")) == "cpu"


def test_device_objects():
    assert mg.device("cpu") is mg.device("cpu") and mg.device("cuda") == "cuda:0"
    assert mg.device("cuda:1").index == 1 and mg.device("cpu").index is None
    with pytest.raises(ValueError, match="unknown device"):
        mg.device("tpu")
    with pytest.raises(ValueError, match="index"):
        mg.device("cuda:x")


# ---------------------------------------------------------------------- GPU variant
def test_creation_and_transfer_on_device(device):
    x = mg.randn(3, 4, device=device)
    assert x.device == device and mg.zeros_like(x).device == device
    y = mg.tensor([1.0, 2.0], requires_grad=True)
    z = y.to(device)
    assert z.device == device
    (z * 2).sum().backward()
    assert y.grad.device == "cpu" and y.grad.tolist() == [2.0, 2.0]
    assert z.cpu().tolist() == [1.0, 2.0]
    assert np.asarray(z.detach()).tolist() == [1.0, 2.0]


def test_linspace_tensor_bounds_in_float64():
    # a float32 0-d bound (PyTorch's tensor overload): the points are computed in float64, not
    # in the bound's float32 and cast afterwards (found by the OpInfo run)
    start = mg.tensor(np.float32(-1.0))
    end = mg.tensor(np.float32(0.7))
    lin = mg.linspace(start, end, 50, dtype=mg.float64)
    ref = np.linspace(-1.0, float(np.float32(0.7)), 50)
    np.testing.assert_allclose(lin.numpy(), ref, rtol=1e-15, atol=1e-15)
    with pytest.raises(RuntimeError, match="0-d"):
        mg.linspace(mg.tensor([0.0, 1.0]), 1.0, 3)
