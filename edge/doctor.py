"""``maskwatch doctor``: what this device has, and whether the config's needs are met."""
from __future__ import annotations

import ctypes.util
import glob

from .config import SAMPLE_SOURCE, Config
from .manifest import Manifest, verify_file


def _check(name: str, probe) -> tuple[str, bool, str]:
    try:
        return name, True, str(probe() or "ok")
    except Exception as exc:  # a doctor reports every failure, whatever its type
        return name, False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _litert():
    from .runtimes.litert import interpreter_module

    module = interpreter_module()
    return module.__name__.split(".")[0]


def _onnxruntime():
    from .runtimes.onnx import onnxruntime_module

    try:
        ort = onnxruntime_module()
    except ImportError:
        raise RuntimeError("not installed: pip install onnxruntime for the .onnx models "
                           "(on a Jetson, NVIDIA's onnxruntime-gpu wheel)") from None
    return f"{ort.__version__}, providers: {', '.join(ort.get_available_providers())}"


def _edgetpu():
    if not ctypes.util.find_library("edgetpu"):
        raise FileNotFoundError("libedgetpu.so.1 not found (install libedgetpu1-std)")
    return "libedgetpu found"


#: What to do when gpiozero finds no pin library (its own message names none).
GPIO_HINT = ("no pin library loads: on a Raspberry Pi install lgpio (apt install python3-lgpio, or "
             "pip install lgpio in the venv) and put the service user in the gpio group")


def _gpio():
    import warnings

    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    with warnings.catch_warnings():  # one PinFactoryFallback per library tried; the report says the outcome
        warnings.simplefilter("ignore")
        try:
            factory = Device._default_pin_factory() if Device.pin_factory is None else Device.pin_factory
        except BadPinFactory:
            raise RuntimeError(_why_no_pin_factory()) from None
    return type(factory).__name__


def _why_no_pin_factory() -> str:
    """Why gpiozero found no pin factory: lgpio missing, or loaded with no GPIO chip it can open."""
    try:
        import lgpio
    except ImportError:
        return GPIO_HINT
    from importlib.metadata import PackageNotFoundError, version

    try:
        loaded = f"lgpio {version('lgpio')} loads"
    except PackageNotFoundError:  # the OS's python3-lgpio has no pip metadata
        loaded = "lgpio loads"
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        return (f"{loaded}, but no GPIO chip is present (no /dev/gpiochip*: not a Pi, or a container "
                "without the device)")
    try:
        lgpio.gpiochip_close(lgpio.gpiochip_open(int(chips[0].removeprefix("/dev/gpiochip"))))
    except Exception as exc:  # lgpio.error, or a chip name that is not a number
        return f"{loaded}, but cannot open {chips[0]} ({exc}): put the service user in the gpio group"
    return f"{loaded} and opens {chips[0]}, but gpiozero refused every pin factory (is this a Raspberry Pi?)"


def _exists(path: str) -> str:
    if not glob.glob(path):
        raise FileNotFoundError(f"{path} not found")
    return path


def _cameras():
    found = sorted(glob.glob("/dev/video*"))
    if not found:
        raise FileNotFoundError("no /dev/video* devices")
    return ", ".join(found)


def checks(config: Config) -> list[tuple[str, bool, str, bool]]:
    """(name, ok, detail, needed by the config) for everything maskwatch can use here."""
    models = Manifest.load(config.models_dir)
    needed_models = {config.detector.model, config.classifier.model}
    results = [(*_check("LiteRT", _litert), any(m.endswith(".tflite") for m in needed_models)),
               (*_check("ONNX Runtime", _onnxruntime), any(m.endswith(".onnx") for m in needed_models)),
               (*_check("Edge TPU delegate", _edgetpu), config.detector.delegate == "edgetpu"),
               (*_check("GPIO pin factory", _gpio), config.signal.backend == "gpiozero"),
               (*_check("cameras", _cameras), config.source.spec.isdigit() or config.source.spec.startswith("/dev/video"))]
    spec = config.source.spec
    if spec != SAMPLE_SOURCE and not spec.isdigit() and "://" not in spec and spec != "picamera2":
        results.append((*_check("source", lambda: _exists(spec)), True))
    here = {name: entry for name, entry in models.entries.items()
            if name in needed_models or (models.directory / entry.file).exists()}
    for name, entry in sorted(here.items()):
        results.append((*_check(f"model {name}", lambda e=entry: verify_file(models.directory / e.file, e) or e.sha256[:12]),
                        name in needed_models))
    if absent := len(models.entries) - len(here):
        results.append(("other models", True, f"{absent} more in {models.path} are not installed here "
                                              "(a bundle carries the ones its config names)", False))
    for name in needed_models - set(models.entries):
        results.append((f"model {name}", False, f"not in {models.path}", True))
    return results


def report(config: Config) -> tuple[str, int]:
    """The report's text and exit code: 1 when something the config needs is missing."""
    lines, failed = [], False
    for name, ok, detail, needed in checks(config):
        mark = "ok  " if ok else ("FAIL" if needed else "--  ")
        failed |= needed and not ok
        lines.append(f"{mark} {name}: {detail}")
    return "\n".join(lines), int(failed)

