"""Making a cuda tensor from host data (issue 17): ``mg.tensor(numpy_array, device="cuda")``.

Runs on the CPU with the CuPy stand-in of ``tests/fake_cupy.py``, whose ``shares_memory``
rejects a numpy argument as CuPy's does; the gpu-marked test repeats it with CuPy.
"""
import numpy as np
import pytest

import minigen as mg

import fake_cupy


@pytest.fixture
def fake_cuda(monkeypatch):
    return fake_cupy.install(monkeypatch)


@pytest.mark.parametrize("dtype", [None, mg.float64, mg.float32])
def test_tensor_from_numpy_on_cuda(fake_cuda, dtype):
    src = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = mg.tensor(src, dtype=dtype, device="cuda")
    assert t.device == "cuda" and isinstance(t.data, fake_cupy.FakeArray)
    assert t.dtype == (np.float64 if dtype is None else dtype)
    src[0, 0] = 100.0                      # the tensor holds its own copy
    np.testing.assert_array_equal(t.data.get(), np.arange(6).reshape(2, 3))


def test_tensor_from_device_array_copies(fake_cuda):
    dev = fake_cupy.FAKE.asarray(np.arange(4.0))
    t = mg.tensor(dev, device="cuda")
    dev[0] = 7.0                           # mg.tensor always copies, as torch.tensor does
    assert t.data.get()[0] == 0.0
    t2 = mg.tensor(t, device="cuda")
    t.data[1] = 9.0
    assert t2.data.get()[1] == 1.0
    view = dev[1:]                         # a view of device memory is copied too
    t3 = mg.tensor(view, device="cuda")
    dev[1] = 5.0
    assert t3.data.get()[0] == 1.0


def test_tensor_from_python_data_on_cuda(fake_cuda):
    t = mg.tensor([[1.0, 2.0]], device="cuda", requires_grad=True)
    assert t.device == "cuda" and t.dtype == mg.float32 and t.requires_grad


@pytest.mark.gpu
def test_tensor_from_numpy_on_real_cuda():
    src = np.arange(6, dtype=np.float32)
    t = mg.tensor(src, device="cuda")
    src[0] = 100.0
    np.testing.assert_array_equal(t.cpu().numpy(), np.arange(6, dtype=np.float32))
