"""The CIFAR-10 loader on small files the test writes in the python-version format (pickled
dicts with b"data" uint8 (N, 3072), channel-major, and b"labels"), as a directory, its parent
and a .tar.gz; bad or missing files; the diffusion dataset and a two-step training on it."""
import os
import pickle
import tarfile

import numpy as np
import pytest

from minigen.data import DataNotFoundError, cifar10_label_names, load_cifar10
from minigen.diffusion.datasets import load_image_dataset

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]


def write_cifar(root, per_batch=4, seed=0, str_keys=False):
    """The six batch files and batches.meta, ``per_batch`` images each; returns
    {file name: (images (n, 3, 32, 32) built pixel by pixel, labels)}."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        rows = np.zeros((per_batch, 3072), dtype=np.uint8)
        for n in range(per_batch):          # the documented layout, written out longhand
            for c in range(3):
                for y in range(32):
                    rows[n, c * 1024 + y * 32:c * 1024 + y * 32 + 32] = images[n, c, y]
        key = (lambda k: k) if str_keys else (lambda k: k.encode())
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump({key("batch_label"): key(name), key("labels"): labels,
                         key("data"): rows, key("filenames"): [b"x.png"] * per_batch}, f,
                        protocol=2)
        written[name] = (images, np.array(labels))
    with open(os.path.join(root, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}, f)
    return written


def test_directory_parent_and_archive(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    written = write_cifar(str(root))
    train_ref = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels_ref = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    for path in (root, tmp_path, archive):
        x, y = load_cifar10(str(path))
        assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x, train_ref)
        np.testing.assert_array_equal(y, labels_ref)
        xt, yt = load_cifar10(str(path), "test")
        np.testing.assert_array_equal(xt, written["test_batch"][0])
        assert len(load_cifar10(str(path), "all")[0]) == 24
        assert cifar10_label_names(str(path)) == NAMES


def test_python3_pickles_with_str_keys_and_numpy1_names(tmp_path):
    written = write_cifar(str(tmp_path), str_keys=True)
    x, _ = load_cifar10(str(tmp_path), "test")
    np.testing.assert_array_equal(x, written["test_batch"][0])
    # the distributed files were pickled by numpy 1: arrays rebuilt by numpy.core.multiarray
    path = tmp_path / "test_batch"
    raw = path.read_bytes()
    if b"numpy._core.multiarray" in raw:
        path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in path.read_bytes()
    np.testing.assert_array_equal(load_cifar10(str(tmp_path), "test")[0],
                                  written["test_batch"][0])


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="cs.toronto.edu.*cifar-10-python.tar.gz"):
        load_cifar10(str(tmp_path / "nowhere"))
    write_cifar(str(tmp_path))
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(DataNotFoundError, match="no data_batch_3"):
        load_cifar10(str(tmp_path))
    assert len(load_cifar10(str(tmp_path), "test")[0]) == 4   # the test split is still there
    with pytest.raises(ValueError, match="split"):
        load_cifar10(str(tmp_path), "validation")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_pickles_that_run_code_and_bad_contents(tmp_path):
    write_cifar(str(tmp_path))
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        load_cifar10(str(tmp_path), "test")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        load_cifar10(str(tmp_path), "test")
    with open(tmp_path / "test_batch", "wb") as f:
        f.write(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a CIFAR-10"):
        load_cifar10(str(tmp_path), "test")


def test_diffusion_dataset_and_two_training_steps(tmp_path):
    root = tmp_path / "c"
    written = write_cifar(str(root), per_batch=2)
    ds = load_image_dataset(str(root))                      # a PATH: recognised as CIFAR-10
    assert ds.name == "cifar10" and ds.shape == (3, 32, 32) and ds.label_names == NAMES
    assert len(ds.train) == 10 and len(ds.heldout) == 2
    x = ds.to_float(ds.heldout)
    np.testing.assert_allclose(x, written["test_batch"][0] / 127.5 - 1.0, atol=1e-6)
    assert load_image_dataset("cifar10", str(root)).shape == (3, 32, 32)
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        load_image_dataset("cifar10")

    from minigen.diffusion.train import TrainConfig, train
    m = train(TrainConfig(data=str(root), preset="tiny", batch_size=4, steps=2, warmup=0,
                          sample_every=0, out=str(tmp_path / "run"), progress=False,
                          images=False), log=lambda *a: None)
    assert m["steps"] == 2 and m["diffusion_shape"] == [3, 32, 32]
