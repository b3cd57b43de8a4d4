"""What starting the ``maskwatch`` command imports, and how long that takes (``python -X importtime``).

Each command runs in a fresh interpreter: ``maskwatch --help``, and the start of ``maskwatch run``
on the built-in sample (``--max-frames 0``: everything is built, no frame is processed). For each:
the total import time (the sum of the top-level imports' cumulative times), the number of modules
imported, and whether any toolchain module (``maskwatch.convert``, TensorFlow, Keras) came with it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

COMMANDS = {"maskwatch --help": ["--help"],
            "maskwatch run (start)": ["run", "--gpio", "none", "--max-frames", "0"]}
TOOLCHAIN = ("maskwatch.convert", "convert", "tensorflow", "keras", "tf2onnx")  #: "convert": before the namespace
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
_CODE = ("import sys\nfrom {entry} import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n")


def profile(argv: list[str], entry: str = "maskwatch.edge.cli", env: dict | None = None) -> dict:
    """Import time and modules of ``maskwatch ARGV`` in a fresh interpreter (``entry``: its cli module)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", _CODE.format(entry=entry, argv=argv)],
                          capture_output=True, text=True, env=env or dict(os.environ), timeout=600)
    rows = [m.groups() for m in map(_LINE.match, done.stderr.splitlines()) if m]
    total_us = sum(int(cumulative) for _, cumulative, indent, _ in rows if not indent.strip(" ") and len(indent) == 1)
    names = [name for *_, name in rows]
    return {"argv": argv, "total_ms": round(total_us / 1000, 1), "modules": len(names),
            "toolchain_modules": sorted(n for n in names if n.startswith(TOOLCHAIN))}


def measure(entry: str = "maskwatch.edge.cli") -> dict:
    return {label: profile(argv, entry) for label, argv in COMMANDS.items()}


def markdown(results: dict, title: str = "") -> str:
    lines = [title, "", "| command | import time ms | modules | toolchain modules |", "|---|---|---|---|"] if title else [
        "| command | import time ms | modules | toolchain modules |", "|---|---|---|---|"]
    for label, r in results.items():
        toolchain = ", ".join(r["toolchain_modules"][:4]) + (" …" if len(r["toolchain_modules"]) > 4 else "")
        lines.append(f"| {label} | {r['total_ms']:.0f} | {r['modules']} | {toolchain or 'none'} |")
    return "\n".join(lines) + "\n"
