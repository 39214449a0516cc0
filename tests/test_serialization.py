"""minigen.save / minigen.load: the safetensors format (interoperability with the safetensors
package when installed), nested checkpoints, atomic writes, corrupted-file errors, and exact
resume of a training run."""
import json
import os
import struct

import numpy as np
import pytest

import minigen as mg
from minigen import nn, optim
from minigen.optim import lr_scheduler

try:
    import safetensors.numpy as st_numpy
    from safetensors import safe_open
except ImportError:  # optional
    st_numpy = None

needs_safetensors = pytest.mark.skipif(st_numpy is None, reason="safetensors not installed")


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "i32": np.array([-1, 7], dtype=np.int32),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "layer.0.weight": rng.standard_normal((2, 3)).astype(np.float32),
    }


def test_flat_round_trip(tmp_path):
    arrays = _arrays()
    path = tmp_path / "flat.safetensors"
    mg.save({k: mg.tensor(v) for k, v in arrays.items()}, path)
    out = mg.load(path)
    assert list(out) == list(arrays)  # same keys, same order
    for k, v in arrays.items():
        t = out[k]
        assert isinstance(t, mg.Tensor) and t.dtype == v.dtype and t.shape == v.shape, k
        np.testing.assert_array_equal(t.numpy(), v)
        assert t.numpy().flags.writeable and t.numpy().flags.c_contiguous
    # the header is valid safetensors: 8-byte length, JSON, 8-byte aligned data start
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0 and "__metadata__" not in header
    assert header["f32"]["dtype"] == "F32" and header["f32"]["shape"] == [3, 4]
    for k, info in header.items():  # every tensor starts at a multiple of its item size
        assert info["data_offsets"][0] % arrays[k].dtype.itemsize == 0, k


def test_non_contiguous_and_state_dict(tmp_path):
    t = mg.arange(12, dtype=mg.float32).reshape(3, 4).T
    mg.save({"t": t}, tmp_path / "t.safetensors")
    np.testing.assert_array_equal(mg.load(tmp_path / "t.safetensors")["t"].numpy(), t.numpy())
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model(mg.randn(5, 3))
    mg.save(model.state_dict(), str(tmp_path / "m.safetensors"))
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    fresh.load_state_dict(mg.load(tmp_path / "m.safetensors"))
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


@needs_safetensors
def test_files_interoperate_with_safetensors_package(tmp_path):
    arrays = _arrays()
    ours = tmp_path / "ours.safetensors"
    mg.save({k: mg.tensor(v) for k, v in arrays.items()}, ours, metadata={"format": "pt"})
    theirs = st_numpy.load_file(str(ours))
    for k, v in arrays.items():
        assert theirs[k].dtype == v.dtype
        np.testing.assert_array_equal(theirs[k], v)
    with safe_open(str(ours), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
    other = tmp_path / "theirs.safetensors"
    st_numpy.save_file(arrays, str(other), metadata={"note": "hi"})
    back = mg.load(other)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k].numpy(), v)
    # a nested checkpoint is still a valid safetensors file, tensors under dotted names
    nested = tmp_path / "nested.safetensors"
    mg.save({"model": {"0.weight": mg.ones(2)}, "step": 3}, nested)
    assert list(st_numpy.load_file(str(nested))) == ["model.0.weight"]


def test_nested_checkpoint_round_trip(tmp_path):
    gen = mg.Generator().manual_seed(2 ** 62 + 12345)
    gen.rng.random(3)
    obj = {
        "model": {"0.weight": mg.ones(2, 3), "0.bias": mg.zeros(2)},
        "optim": {"state": {0: {"step": 4, "exp_avg": mg.full((2, 3), 0.5)}},
                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1],
                                    "amsgrad": False, "name": None}]},
        "step": 10, "loss": float("inf"), "nan": float("nan"), "note": "héllo",
        "rng": gen.get_state(), "array": np.arange(3), "empty": {}, "list": [1, [2, mg.ones(1)]],
        "np_scalar": np.float32(1.5), "dtype": mg.float16, "device": mg.device("cpu"),
    }
    path = tmp_path / "ckpt.safetensors"
    mg.save(obj, path)
    back = mg.load(path)
    assert set(back) == set(obj)
    assert list(back["model"]) == ["0.weight", "0.bias"]  # dotted keys kept, not nested
    np.testing.assert_array_equal(back["model"]["0.weight"].numpy(), np.ones((2, 3)))
    assert list(back["optim"]["state"]) == [0]  # int keys stay ints
    assert back["optim"]["state"][0]["step"] == 4
    assert isinstance(back["optim"]["state"][0]["exp_avg"], mg.Tensor)
    assert back["optim"]["param_groups"][0]["betas"] == (0.9, 0.999)  # tuples stay tuples
    assert back["optim"]["param_groups"][0]["name"] is None
    assert back["step"] == 10 and back["loss"] == float("inf") and np.isnan(back["nan"])
    assert back["note"] == "héllo" and back["empty"] == {}
    assert back["rng"] == gen.get_state()
    assert isinstance(back["array"], np.ndarray) and back["array"].tolist() == [0, 1, 2]
    assert back["list"][0] == 1 and isinstance(back["list"][1][1], mg.Tensor)
    assert back["np_scalar"] == 1.5
    assert back["dtype"] == mg.float16 and back["device"] == mg.device("cpu")
    g2 = mg.Generator().manual_seed(0)
    g2.set_state(back["rng"])
    np.testing.assert_array_equal(g2.rng.random(4), gen.rng.random(4))


def test_key_collisions_and_bad_objects(tmp_path):
    path = tmp_path / "c.safetensors"
    mg.save({"a.b": mg.ones(1), "a": {"b": mg.zeros(1)}}, path)
    back = mg.load(path)
    assert float(back["a.b"][0]) == 1 and float(back["a"]["b"][0]) == 0
    with pytest.raises(TypeError, match="key 'x.y'"):
        mg.save({"x": {"y": object()}}, path)
    with pytest.raises(TypeError, match="keys must be"):
        mg.save({("tuple", "key"): 1}, path)
    with pytest.raises(ValueError, match="reserved"):
        mg.save({"a": mg.ones(1)}, path, metadata={"minigen.tree": "x"})


@pytest.mark.skipif(not isinstance(mg.dtypes.bfloat16, np.dtype), reason="ml_dtypes not installed")
def test_bfloat16(tmp_path):
    t = mg.tensor(np.array([1.5, -2.0, 3.25]), dtype=mg.bfloat16)
    path = tmp_path / "bf16.safetensors"
    mg.save({"t": t}, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8:8 + n])["t"]["dtype"] == "BF16"
    back = mg.load(path)["t"]
    assert back.dtype == mg.bfloat16
    np.testing.assert_array_equal(back.numpy().astype(np.float32), [1.5, -2.0, 3.25])


# ---------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    mg.save({"w": mg.ones(3)}, path)
    old = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        mg.save({"w": mg.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.safetensors"]  # the temporary file is gone
    with pytest.raises(TypeError):
        mg.save({"w": mg.zeros(3), "bad": {"x": object()}}, path)  # fails before writing
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.safetensors"]
    mg.save({"w": mg.zeros(2)}, path)  # and a good save replaces it
    np.testing.assert_array_equal(mg.load(path)["w"].numpy(), [0, 0])


# ---------------------------------------------------------------------- corrupted files
def _write_raw(path, header, data=b"", raw_len=None):
    text = json.dumps(header).encode()
    n = len(text) if raw_len is None else raw_len
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


@pytest.mark.parametrize("header,data,match", [
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "outside"),
    ({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 4 bytes"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "outside"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "overlap"),
    ({"__metadata__": {"k": 1}}, b"", "strings"),
    ({"__metadata__": {"minigen.tree": "{not json"}}, b"", "not valid JSON"),
    ({"__metadata__": {"minigen.tree": '{"$tensor": "gone"}'}}, b"", "missing"),
    ({"__metadata__": {"minigen.tree": '{"$dict": [1, 2]}'}}, b"", "malformed"),
    ({"__metadata__": {"minigen.tree": '{"$what": 1}'}}, b"", "malformed"),
])
def test_corrupted_headers(tmp_path, header, data, match):
    path = _write_raw(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError, match=match) as err:
        mg.load(path)
    tensor_keys = [k for k in header if k != "__metadata__"]
    if match not in ("overlap",) and tensor_keys:
        assert f"'{tensor_keys[0]}'" in str(err.value)  # the error names the key


def test_truncated_and_garbage_files(tmp_path):
    good = tmp_path / "good.safetensors"
    mg.save({"w": mg.ones(100)}, good)
    raw = good.read_bytes()
    short = tmp_path / "short.safetensors"
    short.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="'w'"):
        mg.load(short)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(ValueError, match="too short"):
        mg.load(tiny)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        mg.load(huge)
    garbage = _write_raw(tmp_path / "garbage.safetensors", {}, raw_len=2)
    garbage.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{]")
    with pytest.raises(ValueError, match="not valid JSON"):
        mg.load(garbage)
    notobj = tmp_path / "list.safetensors"
    notobj.write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(ValueError, match="not a JSON object"):
        mg.load(notobj)


@pytest.mark.parametrize("cut", ["header-length-only", "inside-header", "valid-json-prefix"])
def test_header_longer_than_the_file_is_refused(tmp_path, cut):
    # a header length under the size cap that runs past the end of the file: reading only what
    # is there would parse "{}" (or a prefix) and return an empty checkpoint without a word
    good = tmp_path / "good.safetensors"
    mg.save({"w": mg.ones(3)}, good)
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    body = {"header-length-only": raw[:8], "inside-header": raw[:8 + n // 2],
            "valid-json-prefix": struct.pack("<Q", 64) + b"{}"}[cut]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(body)
    with pytest.raises(ValueError, match=r"header length \d+ does not fit the file of "
                                         rf"{len(body)} bytes"):
        mg.load(bad)


@pytest.mark.gpu
def test_map_location_cuda(tmp_path):
    path = tmp_path / "g.safetensors"
    mg.save({"w": mg.ones(3, device="cuda")}, path)
    out = mg.load(path, map_location="cuda")
    assert out["w"].device == "cuda"
    np.testing.assert_array_equal(out["w"].cpu().numpy(), np.ones(3))


# ---------------------------------------------------------------------- exact resume
N_STEPS, K_STEPS = 12, 5


def _build(seed):
    mg.manual_seed(seed)  # a different seed per build: the checkpoint must restore everything
    gen = mg.Generator().manual_seed(seed + 1)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.25, generator=gen),
                          nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = lr_scheduler.warmup_cosine(opt, warmup_steps=3, total_steps=N_STEPS)
    ema = optim.EMA(model, decay=0.9)
    return model, opt, sched, ema, gen


def _batch(step):
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    return mg.tensor(x), mg.tensor(np.sin(x[:, :2]) + x[:, 2:] ** 2)


def _train(model, opt, sched, ema, start, stop):
    model.train()
    for step in range(start, stop):
        x, y = _batch(step)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        ema.update()


def test_resume_is_bit_identical(tmp_path):
    model, opt, sched, ema, gen = _build(seed=0)
    _train(model, opt, sched, ema, 0, N_STEPS)

    m2, o2, s2, e2, g2 = _build(seed=0)
    _train(m2, o2, s2, e2, 0, K_STEPS)
    path = tmp_path / "ckpt.safetensors"
    mg.save({"model": m2.state_dict(), "optim": o2.state_dict(), "sched": s2.state_dict(),
             "ema": e2.state_dict(), "gen": g2.get_state(), "step": K_STEPS}, path)
    del m2, o2, s2, e2, g2

    m3, o3, s3, e3, g3 = _build(seed=99)
    ckpt = mg.load(path)
    m3.load_state_dict(ckpt["model"])
    o3.load_state_dict(ckpt["optim"])
    s3.load_state_dict(ckpt["sched"])
    e3.load_state_dict(ckpt["ema"])
    g3.set_state(ckpt["gen"])
    _train(m3, o3, s3, e3, ckpt["step"], N_STEPS)

    for (name, p), q in zip(model.named_parameters(), m3.parameters()):
        assert np.array_equal(p.detach().numpy(), q.detach().numpy()), name
    for name in ema.shadow:
        assert np.array_equal(ema.shadow[name], e3.shadow[name]), name
    assert opt.param_groups[0]["lr"] == o3.param_groups[0]["lr"]
    assert sched.last_epoch == s3.last_epoch == N_STEPS
    for p, q in zip(model.parameters(), m3.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert np.array_equal(opt.state[p][key], o3.state[q][key])
    assert gen.get_state() == g3.get_state()
