"""``maskwatch bundle``: one offline-installable archive for a device, built on a connected workstation.

With ``--sign KEY`` the archive itself is signed too: ``maskwatch-<version>-<target>.tar.gz.sig``
beside it, which a device checks before it opens the archive (``maskwatch update``, or the
``ssh-keygen -Y verify`` line in docs/deployment.md for a first install).

Layout of ``maskwatch-<version>-<target>.tar.gz`` (one top folder of that name)::

    install.sh            offline installer: checks SHA256SUMS, venv, pip --no-index, models, config, unit
    SHA256SUMS            sha256 of every other file (``sha256sum -c`` format)
    SHA256SUMS.sig        with ``--sign KEY``: its SSH signature (namespace ``maskwatch-bundle``), which
                          install.sh requires where the device has /etc/maskwatch/allowed_signers
    target.env            the target's Python version and machine, read by install.sh
    bundle.json           what is inside: target, version, wheels, models, build time
    wheels/*.whl          maskwatch's own wheel (``pip wheel --no-deps``) and its runtime dependencies
                          for the target (``pip download --only-binary=:all: --platform ...``); no TensorFlow
    models/               the model files named (default: the config's detector and classifier)
    models/manifest.json  their manifest entries only, so the runtime checks their sha256
    config/maskwatch.toml the config given, or a commented default
    systemd/maskwatch.service  the unit for the default layout (install.sh rewrites its paths)

Models: the maskwatch wheel holds the default models only (package ``maskwatch.models``); the
bundle ships the models its config names (or ``--models``), taken from the checkout's models
folder; install.sh puts them in ``<prefix>/models`` and the unit sets ``MASKWATCH_MODELS`` there.
So the models a pole runs are exactly the bundle's (a different detector, or a retrained
classifier, is a new bundle, not a new wheel), checked twice: by SHA256SUMS at install and by the
manifest at every start. The wheel's copies are a fallback for running ``maskwatch`` by hand
without ``MASKWATCH_MODELS``.

Example::

    maskwatch bundle --target linux-aarch64-py311 --out dist/ --config pole-7.toml
    scp dist/maskwatch-0.1.0-linux-aarch64-py311.tar.gz pi@pole-7:
    ssh pi@pole-7 'tar xzf maskwatch-*.tar.gz && sudo maskwatch-*/install.sh'
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from maskwatch.edge.manifest import sha256_of
from maskwatch.edge.deploy import DeployError
from maskwatch.edge.deploy.signature import SIGNATURE_NAMESPACE
from maskwatch.convert.bundle.targets import FORBIDDEN, TARGETS, Target
from maskwatch.edge.deploy.unit import UnitSettings, render_unit

log = logging.getLogger(__name__)

DEFAULT_CONFIG = """\
# maskwatch configuration, installed by the bundle's install.sh. Every key is described in
# docs/configuration.md; a mistyped key is an error naming it.
#
# Models: the service sets MASKWATCH_MODELS to the bundle's models folder (<prefix>/models);
# models_dir here would override it.

# device_id = "pole-7"              # names this device in events and MQTT topics (default: host name)

[source]
spec = "0"                          # camera index or /dev/videoN, rtsp://..., picamera2

[signal]
backend = "auto"                    # gpiozero on a Pi, Jetson.GPIO on a Jetson, else none
# red_pin = 17
# green_pin = 27
# buzzer_pin = 22

[events.jsonl]
path = "/var/lib/maskwatch/events.jsonl"   # the service may write only under /var/lib/maskwatch

# [events.mqtt]
# host = "broker.local"
# username = "pole-7"
# password = "secret"
# tls = true
"""

_SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
                                        ".pytest_cache", ".cache", "maskwatch-out", "out", "*.keras", "*.tmp")


def _step(name: str, started: float, timings: dict) -> float:
    now = time.monotonic()
    timings[name] = round(now - started, 2)
    log.info("bundle: %s took %.1f s", name, now - started)
    return now


def _is_source_tree(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    return pyproject.is_file() and 'name = "maskwatch"' in pyproject.read_text()


def source_tree() -> Path:
    """The maskwatch checkout to build the wheel from: the one this package runs from (an editable
    install), else the current folder when it is one (a venv installed from a checkout, run inside it)."""
    import maskwatch.edge as edge

    for root in (Path(edge.__file__).resolve().parents[1], Path.cwd()):
        if _is_source_tree(root):
            return root
    raise DeployError(f"{Path.cwd()}: not a maskwatch source tree; run bundle inside a checkout, or give --source DIR")


def _pip(args: list[str], what: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    log.debug("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
        raise DeployError(f"{what} failed (pip exit {done.returncode}): {errors[0] if errors else 'no output'}")


def build_wheel(source: Path, wheels: Path, scratch: Path) -> Path:
    """maskwatch's own wheel, built from a clean copy of the tree (the checkout gets no build/ folder)."""
    copy = scratch / "src"
    shutil.copytree(source, copy, ignore=_SOURCE_IGNORE)
    _pip(["wheel", "--no-deps", "--wheel-dir", str(wheels), str(copy)], "building the maskwatch wheel")
    built = sorted(wheels.glob("maskwatch-*.whl"))
    if len(built) != 1:
        raise DeployError(f"{wheels}: expected one maskwatch wheel, found {[p.name for p in built]}")
    return built[0]


def extras_for(models: list[str]) -> list[str]:
    """The runtime extras the bundled models need: ``onnx`` for an .onnx file (LiteRT is always in)."""
    return ["onnx"] if any(Path(m).suffix == ".onnx" for m in models) else []


def _requirements(target: Target, own_wheel: Path, extras: list[str]) -> list[str]:
    """What pip resolves for a target: maskwatch's wheel with its extras, and the target's packages."""
    extras = sorted({*extras, *target.extras})
    own = f"maskwatch[{','.join(extras)}] @ {own_wheel.resolve().as_uri()}" if extras else str(own_wheel)
    return [own, *target.packages]


def _target_args(target: Target, pins_file: Path) -> list[str]:
    """pip's options for the target's wheels only (binary, its platforms, Python and ABI), with its pins."""
    platforms = [arg for tag in target.platforms for arg in ("--platform", tag)]
    pins_file.write_text("".join(f"{pin}\n" for pin in target.pins))
    return ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.python,
            "--abi", target.abi, "--abi", "abi3", "--abi", "none", *platforms, "--constraint", str(pins_file)]


def download_dependencies(target: Target, own_wheel: Path, wheels: Path, extras: list[str] = ()) -> None:
    """The runtime dependencies of ``own_wheel`` with ``extras`` (never ``convert``: no TensorFlow) and
    the target's packages, as wheels for the target."""
    with tempfile.TemporaryDirectory() as scratch:
        args = _target_args(target, Path(scratch) / "pins.txt")
        _pip(["download", "--dest", str(wheels), *args, *_requirements(target, own_wheel, extras)],
             f"downloading wheels for {target.name} (needs the package index)")
    forbidden = [p.name for p in wheels.glob("*.whl") if p.name.split("-")[0].lower() in FORBIDDEN]
    if forbidden:
        raise DeployError(f"the wheelhouse for {target.name} pulled in {forbidden[0]}: a device never gets TensorFlow")


def resolve(target: Target, own_wheel: Path, extras: list[str] = ()) -> dict[str, str]:
    """What :func:`download_dependencies` would fetch, resolved without downloading the wheels (pip's
    dry run with the index's metadata): normalized distribution name (PEP 503) -> wheel file name."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        args = _target_args(target, scratch / "pins.txt")
        _pip(["install", "--dry-run", "--ignore-installed", "--target", str(scratch / "t"),
              "--report", str(scratch / "report.json"), *args, *_requirements(target, own_wheel, extras)],
             f"resolving the wheels for {target.name} (needs the package index)")
        report = json.loads((scratch / "report.json").read_text())
    return {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["download_info"]["url"].rsplit("/", 1)[-1]
            for item in report["install"]}


def wheel_models(wheel: Path) -> dict[str, str]:
    """The model files inside a maskwatch wheel (package ``maskwatch.models``): name -> sha256."""
    import hashlib
    import zipfile

    prefix = "maskwatch/models/"
    with zipfile.ZipFile(wheel) as zf:
        return {n[len(prefix):]: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()
                if n.startswith(prefix) and "/" not in n[len(prefix):] and n.endswith((".tflite", ".onnx"))}


def add_models(names: list[str], models_src: Path, dest: Path, in_wheel: dict[str, str] | None = None) -> list[str]:
    """Write a manifest holding the named models' entries, and copy each model (hash checked) that
    the bundle's wheel does not already hold byte for byte (``in_wheel``: name -> sha256), so no
    model travels twice; install.sh takes those from the installed wheel."""
    from maskwatch.edge.manifest import Manifest

    manifest = Manifest.load(models_src)
    entries = {}
    dest.mkdir(parents=True)
    for name in names:
        path, entry = manifest.resolve(name)
        entries[entry.file] = entry
        if (in_wheel or {}).get(entry.file) != entry.sha256:
            shutil.copyfile(path, dest / entry.file)
    Manifest(dest, entries).save()
    return sorted(entries)


def write_install_script(root: Path) -> None:
    text = resources.files(__package__).joinpath("install.sh").read_text()
    (root / "install.sh").write_text(text)
    (root / "install.sh").chmod(0o755)


def write_sums(root: Path) -> None:
    """``SHA256SUMS`` in ``sha256sum`` format: every file under ``root`` but itself, sorted."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    lines = [f"{sha256_of(root / name)}  {name}\n" for name in files if name != "SHA256SUMS"]
    (root / "SHA256SUMS").write_text("".join(lines))


def sign_file(path: Path, key: Path) -> Path:
    """Sign ``path`` with an SSH private key (``ssh-keygen -Y sign``, namespace ``maskwatch-bundle``):
    ``PATH.sig``. A device trusts the signer by listing its public key in /etc/maskwatch/allowed_signers
    (``builder@example.org namespaces="maskwatch-bundle" ssh-ed25519 AAAA...``)."""
    if shutil.which("ssh-keygen") is None:
        raise DeployError("--sign needs ssh-keygen (apt install openssh-client)")
    if not Path(key).is_file():
        raise DeployError(f"{key}: signing key not found")
    signature = Path(f"{path}.sig")
    signature.unlink(missing_ok=True)  # ssh-keygen would ask before overwriting it
    done = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", SIGNATURE_NAMESPACE, str(path)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not signature.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise DeployError(f"{key}: ssh-keygen could not sign {Path(path).name} ({lines[-1] if lines else 'no output'}; "
                          "a key with a passphrase needs ssh-agent)")
    return signature


def sign_sums(root: Path, key: Path) -> Path:
    """``root/SHA256SUMS.sig``: the bundle's own check of its files (install.sh); the archive's
    signature (:func:`sign_file`) is what protects a device from a changed bundle."""
    return sign_file(root / "SHA256SUMS", key)


def write_archive(root: Path, archive: Path) -> None:
    """tar.gz of ``root`` under its own name; root-owned, 0644 files (0755 for install.sh), written atomically."""
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        if info.isdir() or info.name.endswith("/install.sh"):
            info.mode = 0o755
        else:
            info.mode = 0o644
        return info

    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(root, arcname=root.name, filter=clean)
    tmp.replace(archive)


def build_bundle(target_name: str, out: Path, config_path: Path | None = None, models: list[str] | None = None,
                 source: Path | None = None, sign: Path | None = None) -> Path:
    """Build ``<out>/maskwatch-<version>-<target>.tar.gz``, its SHA256SUMS signed with the SSH key
    ``sign`` if given; returns its path. Logs each step's time."""
    from maskwatch.edge import __version__
    from maskwatch.edge.config import load_config
    from maskwatch.edge.manifest import default_models_dir

    if target_name not in TARGETS:
        raise DeployError(f"unknown target {target_name!r}; choose from: {', '.join(TARGETS)}")
    if sign is not None and not Path(sign).is_file():
        raise DeployError(f"{sign}: signing key not found")
    target = TARGETS[target_name]
    config_text = Path(config_path).read_text() if config_path else DEFAULT_CONFIG
    config = load_config(config_path)                      # a bad config fails here, not on the pole
    names = list(dict.fromkeys(models or [config.detector.model, config.classifier.model]))
    shipped = {Path(n).name for n in names}
    for needed in (config.detector.model, config.classifier.model):
        if Path(needed).name not in shipped:
            raise DeployError(f"the config uses {needed} but the bundle ships only {', '.join(sorted(shipped))}; "
                              "add it to --models")
    models_src = config.models_dir or default_models_dir()
    from maskwatch.edge.manifest import Manifest

    for model in names:  # an unknown or broken model fails now, before the wheel is built
        Manifest.load(models_src).resolve(model)
    source = Path(source) if source else source_tree()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"maskwatch-{__version__}-{target.name}"
    archive = out / f"{name}.tar.gz"
    timings: dict[str, float] = {}
    started = t = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".maskwatch-bundle-", dir=out) as scratch:
        scratch = Path(scratch)
        root = scratch / name
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        own = build_wheel(source, wheels, scratch)
        t = _step("maskwatch wheel", t, timings)
        model_files = add_models(names, models_src, root / "models", wheel_models(own))
        t = _step("models", t, timings)
        extras = sorted({*extras_for(names), *target.extras})
        download_dependencies(target, own, wheels, extras)
        t = _step("dependency wheels", t, timings)
        (root / "config").mkdir()
        (root / "config" / "maskwatch.toml").write_text(config_text)
        (root / "systemd").mkdir()
        (root / "systemd" / "maskwatch.service").write_text(render_unit(UnitSettings()))
        write_install_script(root)
        (root / "target.env").write_text(f"MW_VERSION={__version__}\nMW_TARGET={target.name}\n"
                                         f"MW_PYTHON={target.python}\nMW_MACHINE={target.machine}\n"
                                         f"MW_EXTRAS={','.join(extras)}\n"
                                         f"MW_PACKAGES='{' '.join(target.packages)}'\n"
                                         f"MW_SYSTEM_SITE={int(target.system_site_packages)}\n")
        wheel_names = sorted(p.name for p in wheels.glob("*.whl"))
        (root / "bundle.json").write_text(json.dumps({
            "maskwatch": __version__, "target": target.name, "python": target.python, "machine": target.machine,
            "glibc": target.glibc, "boards": target.boards, "platforms": target.platforms, "wheels": wheel_names, "models": model_files, "extras": extras,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }, indent=2) + "\n")
        write_sums(root)
        if sign is not None:
            sign_sums(root, Path(sign))
        t = _step("checksums", t, timings)
        write_archive(root, archive)
        if sign is not None:  # the whole archive, checked by the installed maskwatch before it is opened
            sign_file(archive, Path(sign))
        _step("archive", t, timings)
    size = archive.stat().st_size / 1e6
    log.info("bundle: %s, %.1f MB, %d wheels, models %s, %.1f s in all (%s)", archive, size, len(wheel_names),
             ", ".join(model_files), time.monotonic() - started, ", ".join(f"{k} {v} s" for k, v in timings.items()))
    return archive
