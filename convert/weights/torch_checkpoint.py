"""Read a PyTorch ``.pth`` state dict into numpy arrays, without importing torch.

Two layouts are read:

* the zip layout (torch >= 1.6): ``<prefix>/data.pkl`` is a pickle whose
  persistent ids name storages, and ``<prefix>/data/<key>`` holds each
  storage's raw bytes (little-endian unless ``<prefix>/byteorder`` says ``big``);
* the legacy layout (torch < 1.6, e.g. torchvision's ``mobilenet_v2-b0353104.pth``):
  consecutive pickles (magic number, protocol version, system info, the state
  dict, the list of storage keys), then per storage an int64 element count and
  its raw little-endian bytes.

The pickle is read by a restricted unpickler: only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and the typed
storage classes are allowed. Any other global makes :func:`load_state_dict`
raise :class:`~maskwatch.edge.errors.ConversionError` naming the file, before anything
from the pickle is run.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.edge.errors import ConversionError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: Storage class name -> numpy dtype ("bfloat16" is widened to float32 on read).
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}


@dataclass
class _Storage:
    """A storage named by the pickle; ``data`` is filled in once its bytes are read."""

    dtype: object
    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """A tensor whose storage may not be read yet (the legacy layout stores data last)."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


class _StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, persistent_load):
        super().__init__(file)
        self._path = path
        self._persistent = persistent_load

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise ConversionError(f"{self._path}: checkpoint refers to {module}.{name}, "
                              "which a state-dict reader does not allow")

    def persistent_load(self, pid):
        return self._persistent(pid)


def _read_pickle(file, path: Path, persistent_load=None):
    def refuse(pid):
        raise ConversionError(f"{path}: unexpected persistent id {pid!r}")
    try:
        return _RestrictedUnpickler(file, path, persistent_load or refuse).load()
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"{path}: not a readable checkpoint pickle ({exc})") from exc


def _as_array(raw: bytes, dtype, path: Path, byteorder: str = "<") -> np.ndarray:
    if dtype == "bfloat16":  # the top 16 bits of a float32
        return (np.frombuffer(raw, f"{byteorder}u2").astype(np.uint32) << 16).view(np.float32)
    dt = np.dtype(dtype).newbyteorder(byteorder) if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
    if len(raw) % dt.itemsize:
        raise ConversionError(f"{path}: storage of {len(raw)} bytes is not a whole number of {dt}")
    return np.frombuffer(raw, dt).astype(dt.newbyteorder("="))


def _itemsize(dtype) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _load_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise ConversionError(f"{path}: zip holds no <prefix>/data.pkl")
        prefix = pkl[: -len("data.pkl")]
        order = "<"
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big":
            order = ">"

        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
                raise ConversionError(f"{path}: unexpected persistent id {pid!r}")
            _, kind, key, _location, numel = pid
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ConversionError(f"{path}: storage {member} is missing")
            if str(key) not in storages:  # tensors sharing a storage read it once
                storages[str(key)] = _Storage(kind.dtype, str(key), int(numel),
                                              _as_array(archive.read(member), kind.dtype, path, order))
            return storages[str(key)]
        return _read_pickle(io.BytesIO(archive.read(pkl)), path, persistent_load)


def _load_legacy(path: Path) -> object:
    storages: dict[str, _Storage] = {}

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise ConversionError(f"{path}: unexpected persistent id {pid!r}")
        _, kind, key, _location, numel, view = pid
        if view is not None:
            raise ConversionError(f"{path}: storage views are not supported")
        return storages.setdefault(str(key), _Storage(kind.dtype, str(key), int(numel)))

    with open(path, "rb") as f:
        if _read_pickle(f, path) != LEGACY_MAGIC:
            raise ConversionError(f"{path}: neither a zip nor a legacy torch checkpoint")
        if _read_pickle(f, path) != LEGACY_PROTOCOL:
            raise ConversionError(f"{path}: unknown legacy checkpoint protocol")
        _read_pickle(f, path)  # system info: endianness and type sizes
        result = _read_pickle(f, path, persistent_load)
        for key in _read_pickle(f, path):
            storage = storages.get(str(key))
            head = f.read(8)
            if storage is None or len(head) != 8:
                raise ConversionError(f"{path}: storage {key} is missing or truncated")
            count = struct.unpack("<q", head)[0]
            raw = f.read(count * _itemsize(storage.dtype))
            if count != storage.numel or len(raw) != count * _itemsize(storage.dtype):
                raise ConversionError(f"{path}: storage {key} is truncated")
            storage.data = _as_array(raw, storage.dtype, path)
    return result


def _materialize(ref: _TensorRef, path: Path) -> np.ndarray:
    data = ref.storage.data
    if data is None:
        raise ConversionError(f"{path}: storage {ref.storage.key} has no data")
    if np.prod(ref.size, dtype=np.int64) > 0:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if ref.offset < 0 or min(ref.stride, default=0) < 0 or last >= data.size:
            raise ConversionError(f"{path}: a tensor runs past its storage {ref.storage.key}")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:], shape=ref.size,
        strides=tuple(s * data.itemsize for s in ref.stride), writeable=False)
    return np.array(view)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of the ``.pth`` at ``path`` by name, in the file's order.

    A checkpoint that wraps its weights as ``{"state_dict": {...}}`` is unwrapped.
    Raises :class:`ConversionError` naming the file for a missing, corrupt or
    disallowed checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: checkpoint file not found")
    result = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    if isinstance(result, dict) and isinstance(result.get("state_dict"), dict):
        result = result["state_dict"]
    if not isinstance(result, dict) or not all(
            isinstance(v, _TensorRef) for v in result.values()):
        raise ConversionError(f"{path}: checkpoint is not a flat state dict of tensors")
    return {str(name): _materialize(ref, path) for name, ref in result.items()}
