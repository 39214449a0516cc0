"""``save`` / ``load`` in the safetensors format, written and read here (numpy only).

File layout (https://github.com/huggingface/safetensors):

    8 bytes    N, little-endian uint64: the header's length
    N bytes    JSON header {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
               "__metadata__": {str: str}}, padded with spaces
    rest       the tensors' raw little-endian bytes; offsets are relative to the start of this
               section

``obj`` may be a flat ``{name: Tensor}`` (written as a plain safetensors file, readable by any
safetensors reader) or any nesting of dicts, lists and tuples with Tensors / numpy arrays and
JSON-able leaves (ints, floats, strings, None, RNG states, optimizer hyper-parameters):
tensors are stored under their dotted path ("model.0.weight", "optim.state.3.exp_avg") and the
structure, with every non-tensor leaf, goes JSON-encoded into ``__metadata__["minigen.tree"]``,
so ``load`` returns the same nesting with the same key types.

Writes are atomic: a temporary file in the destination directory, fsync, ``os.replace``.
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

from . import dtypes
from .backend import CPU, Device, to_device
from .tensor import Tensor

TREE_KEY = "minigen.tree"
_BIG_ENDIAN = sys.byteorder == "big"
_MAX_HEADER = 100 * 1024 * 1024  # as the reference reader: refuse absurd header lengths

_CODES = {"F64": np.dtype("float64"), "F32": np.dtype("float32"), "F16": np.dtype("float16"),
          "I64": np.dtype("int64"), "I32": np.dtype("int32"), "I16": np.dtype("int16"),
          "I8": np.dtype("int8"), "U64": np.dtype("uint64"), "U32": np.dtype("uint32"),
          "U16": np.dtype("uint16"), "U8": np.dtype("uint8"), "BOOL": np.dtype("bool")}
if dtypes.bfloat16 is not None:
    _CODES["BF16"] = dtypes.bfloat16
    try:
        import ml_dtypes as _mld
        _CODES["F8_E4M3"] = np.dtype(_mld.float8_e4m3fn)
        _CODES["F8_E5M2"] = np.dtype(_mld.float8_e5m2)
    except (ImportError, AttributeError):  # pragma: no cover - old ml_dtypes
        pass
_NAMES = {dt: code for code, dt in _CODES.items()}


# ---------------------------------------------------------------------- nesting <-> flat
def _is_array(x):
    return isinstance(x, (Tensor, np.ndarray)) or hasattr(x, "__cuda_array_interface__")


def _host_array(x):
    arr = x.data if isinstance(x, Tensor) else x
    if not isinstance(arr, np.ndarray):
        arr = to_device(arr, CPU)
    return arr


class _Flattener:
    def __init__(self):
        self.tensors = {}

    def _name(self, path):
        name = ".".join(str(p) for p in path) or "tensor"
        base, n = name, 1
        while name in self.tensors:  # a dotted path can collide ({"a.b": x, "a": {"b": y}})
            name = f"{base}~{n}"
            n += 1
        return name

    def encode(self, obj, path):
        if _is_array(obj):
            name = self._name(path)
            self.tensors[name] = _host_array(obj)
            return {"$tensor": name, "kind": "tensor" if isinstance(obj, Tensor) else "ndarray"}
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if not isinstance(k, (str, int, float, bool)) and k is not None:
                    raise TypeError(f"save: dict key {k!r} at {_where(path)} is a "
                                    f"{type(k).__name__}; keys must be str, int, float or bool")
                items.append([k, self.encode(v, path + [k])])
            return {"$dict": items}
        if isinstance(obj, tuple):
            return {"$tuple": [self.encode(v, path + [i]) for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, path + [i]) for i, v in enumerate(obj)]
        if isinstance(obj, np.generic):
            return obj.item()
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, (Device, np.dtype)):
            return {"$str": str(obj), "type": type(obj).__name__}
        raise TypeError(f"save: can't store a {type(obj).__name__} at {_where(path)} (tensors, "
                        "arrays, dicts, lists, tuples, numbers, strings and None are supported)")


def _where(path):
    return "the top level" if not path else "key '" + ".".join(str(p) for p in path) + "'"


def _decode(node, tensors):
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if isinstance(node, dict):
        if "$tensor" in node:
            t = tensors[node["$tensor"]]
            return t if node.get("kind") == "tensor" else t.data
        if "$dict" in node:
            return {k: _decode(v, tensors) for k, v in node["$dict"]}
        if "$tuple" in node:
            return tuple(_decode(v, tensors) for v in node["$tuple"])
        if "$float" in node:
            return float(node["$float"])
        if "$str" in node:
            return Device(node["$str"]) if node.get("type") == "Device" else \
                np.dtype(node["$str"]) if node.get("type") == "dtype" else node["$str"]
        raise ValueError(f"load: unknown node in {TREE_KEY}: {sorted(node)}")
    return node


def _is_flat(obj):
    return isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


# ---------------------------------------------------------------------- writer
def save(obj, path, metadata: dict | None = None):
    """Write ``obj`` (a state dict, or a nested checkpoint) to ``path`` atomically.

    ``metadata``: extra ``{str: str}`` entries for the header's ``__metadata__``.
    """
    meta = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("save: metadata must map str to str")
            if k == TREE_KEY:
                raise ValueError(f"save: metadata key {TREE_KEY!r} is reserved")
            meta[k] = v
    fl = _Flattener()
    if _is_flat(obj):
        for k, v in obj.items():
            fl.tensors[k] = _host_array(v)
    else:
        meta[TREE_KEY] = json.dumps(fl.encode(obj, []), separators=(",", ":"))
    header, chunks = _header(fl.tensors, meta)
    _atomic_write(os.fspath(path), header, chunks)


def _header(tensors, meta):
    """The padded header bytes and the arrays in file order (widest dtypes first, so every
    tensor's offset is a multiple of its item size); the header lists the tensors in the order
    they were given, which is the order ``load`` returns them in."""
    entries, chunks, offset = {}, [], 0
    order = sorted(tensors, key=lambda k: -tensors[k].dtype.itemsize)
    for name in order:
        arr = tensors[name]
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        code = _NAMES.get(arr.dtype)
        if code is None:
            raise TypeError(f"save: tensor '{name}' has dtype {arr.dtype}, which safetensors "
                            "can't store")
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
        if _BIG_ENDIAN:  # pragma: no cover - the format is little-endian
            arr = arr.byteswap()
        n = arr.nbytes
        entries[name] = {"dtype": code, "shape": list(arr.shape),
                         "data_offsets": [offset, offset + n]}
        chunks.append(arr)
        offset += n
    entries = {name: entries[name] for name in tensors}  # header in the caller's key order
    if meta:
        entries = {"__metadata__": meta, **entries}
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * (-(len(text) + 8) % 8)
    return struct.pack("<Q", len(text)) + text, chunks


def _atomic_write(path, header, chunks):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            for arr in chunks:
                if arr.size:
                    f.write(arr.reshape(-1).view(np.uint8).data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


# ---------------------------------------------------------------------- reader
def load(path, map_location=None):
    """Read a file written by ``save`` (or any safetensors file).

    Returns the saved structure, or ``{name: Tensor}`` for a plain safetensors file. Tensors
    are loaded onto ``map_location`` (a device or device string; default cpu).
    """
    path = os.fspath(path)
    device = CPU if map_location is None else Device(map_location)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header, data_start = _read_header(f, size, path)
        meta = header.pop("__metadata__", None) or {}
        data_len = size - data_start
        entries = [(name, *_check_entry(name, info, data_len, path))
                   for name, info in header.items()]
        spans = sorted((begin, end, name) for name, _, _, begin, end in entries)
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                raise ValueError(f"load: {path}: tensors '{n0}' and '{n1}' overlap in the file")
        tensors = {}
        for name, dt, shape, begin, end in entries:
            arr = np.empty(shape, dtype=dt)
            if end > begin:
                f.seek(data_start + begin)
                got = f.readinto(memoryview(arr.reshape(-1).view(np.uint8)))
                if got != end - begin:
                    raise ValueError(f"load: {path}: tensor '{name}' is truncated")
            if _BIG_ENDIAN:  # pragma: no cover - the format is little-endian
                arr = arr.byteswap()
            tensors[name] = Tensor._wrap(to_device(arr, device), device)
    if TREE_KEY in meta:
        try:
            tree = json.loads(meta[TREE_KEY])
        except json.JSONDecodeError as exc:
            raise ValueError(f"load: {path}: {TREE_KEY} in the metadata is not valid JSON "
                             f"({exc})") from None
        try:
            missing = _tree_tensors(tree) - set(tensors)
            obj = None if missing else _decode(tree, tensors)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"load: {path}: malformed {TREE_KEY} in the metadata "
                             f"({type(exc).__name__}: {exc})") from None
        if missing:
            raise ValueError(f"load: {path}: the structure refers to tensors missing from the "
                             f"file: {sorted(missing)}")
        return obj
    return tensors


def _tree_tensors(node, out=None):
    out = set() if out is None else out
    if isinstance(node, list):
        for v in node:
            _tree_tensors(v, out)
    elif isinstance(node, dict):
        if "$tensor" in node:
            out.add(node["$tensor"])
        for _, v in node.get("$dict", ()):
            _tree_tensors(v, out)
        for v in node.get("$tuple", ()):
            _tree_tensors(v, out)
    return out


def _read_header(f, size, path):
    raw = f.read(8)
    if len(raw) < 8:
        raise ValueError(f"load: {path}: file is too short ({size} bytes) to be a safetensors "
                         "file")
    (n,) = struct.unpack("<Q", raw)
    if n > _MAX_HEADER or 8 + n > size:
        raise ValueError(f"load: {path}: header length {n} does not fit the file of {size} "
                         "bytes (not a safetensors file, or truncated)")
    text = f.read(n)
    if len(text) != n:  # the file shrank after its size was taken
        raise ValueError(f"load: {path}: the header is truncated ({len(text)} of {n} bytes)")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"load: {path}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"load: {path}: the header is not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and
                                 all(isinstance(v, str) for v in meta.values())):
        raise ValueError(f"load: {path}: __metadata__ must map strings to strings")
    return header, 8 + n


def _check_entry(name, info, data_len, path):
    where = f"load: {path}: tensor '{name}'"
    if not isinstance(info, dict):
        raise ValueError(f"{where}: header entry is not an object")
    code = info.get("dtype")
    if code not in _CODES:
        hint = " (install ml_dtypes for BF16/F8)" if code in ("BF16", "F8_E4M3", "F8_E5M2") \
            else ""
        raise ValueError(f"{where}: unknown dtype {code!r}{hint}")
    dt = _CODES[code]
    shape = info.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                              and s >= 0 for s in shape):
        raise ValueError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    offs = info.get("data_offsets")
    if not (isinstance(offs, list) and len(offs) == 2 and
            all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
        raise ValueError(f"{where}: data_offsets {offs!r} is not a pair of integers")
    begin, end = offs
    if not 0 <= begin <= end <= data_len:
        raise ValueError(f"{where}: data_offsets [{begin}, {end}] are outside the data section "
                         f"of {data_len} bytes (truncated or corrupted file)")
    want = math.prod(shape) * dt.itemsize
    if end - begin != want:
        raise ValueError(f"{where}: shape {shape} of {code} needs {want} bytes but data_offsets "
                         f"span {end - begin}")
    return dt, tuple(shape), begin, end


__all__ = ["save", "load"]
