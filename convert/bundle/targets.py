"""The device platforms a bundle is built for: machine, Python, glibc and what each adds."""
from __future__ import annotations

from dataclasses import dataclass

FORBIDDEN = ("tensorflow", "tf_keras", "tensorboard", "keras")   #: never on a device


@dataclass(frozen=True)
class Target:
    """A device platform: the wheels' machine, Python and newest glibc, and what the bundle adds for it.

    ``glibc`` is the target OS's own (pip does not widen ``manylinux_2_36`` to older tags, so every
    tag down to ``manylinux_2_17`` is listed). ``packages`` are installed beside maskwatch (a pin
    library); ``pins`` constrain versions where a dependency's newest release has no wheel for the
    target; ``extras`` are maskwatch extras the target always gets. With ``system_site_packages`` the
    venv also sees the OS's Python packages (for a pin library only the OS ships for that Python);
    every bundled wheel is still installed into the venv, never taken from the OS.
    """

    name: str
    machine: str
    python: str
    glibc: str
    boards: str
    packages: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    system_site_packages: bool = False

    @property
    def platforms(self) -> list[str]:
        newest = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(newest, 16, -1)]
        return tags + [f"manylinux2014_{self.machine}"]

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")


#: lgpio's aarch64 wheels are manylinux_2_34 (cp39 to cp312): the lower bound keeps pip from the
#: broken lgpio 0.0.0.2 it would otherwise pick where no wheel fits.
LGPIO = "lgpio>=0.2.2"

TARGETS = {t.name: t for t in (
    Target("linux-aarch64-py311", "aarch64", "3.11", "2.36",
           "Raspberry Pi 4/5 on Raspberry Pi OS Bookworm 64-bit (Debian 12)", packages=(LGPIO,)),
    Target("linux-aarch64-py313", "aarch64", "3.13", "2.41",
           "Raspberry Pi 4/5 on Raspberry Pi OS Trixie 64-bit (Debian 13); pins from the OS's python3-lgpio",
           system_site_packages=True),
    Target("linux-aarch64-py310", "aarch64", "3.10", "2.35",
           "NVIDIA Jetson Orin on JetPack 6 (Ubuntu 22.04); CPU inference (the GPU needs NVIDIA's wheels)",
           pins=("onnxruntime==1.23.2",), extras=("jetson",)),
    Target("linux-x86_64-py311", "x86_64", "3.11", "2.28",
           "x86-64 Linux with Python 3.11 and glibc 2.28 or newer (Debian 10+, Ubuntu 20.04+, RHEL 8+)"),
)}
