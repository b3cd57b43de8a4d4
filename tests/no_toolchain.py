"""Run ``maskwatch ARGS...`` in this interpreter, then fail if it imported the workstation side.

A pole runs ``edge/`` only: ``maskwatch.convert``, ``maskwatch.benchmarks``, TensorFlow, Keras and
tf2onnx must never load for a device command. Exit status: the command's own, or 3 (naming the
modules) when any of them was imported. Used by the tests on this checkout, on an installed bundle
and on the emulated arm64 device (``.ci/arm64.sh``)::

    python tests/no_toolchain.py run --gpio mock --max-frames 2
"""
import sys

from maskwatch.edge.cli import main

WORKSTATION = ("maskwatch.convert", "maskwatch.benchmarks")
TOOLCHAIN = ("tensorflow", "keras", "tf_keras", "tf2onnx")

if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    loaded = sorted(m for m in sys.modules if m.startswith(WORKSTATION) or m.split(".")[0] in TOOLCHAIN)
    if loaded:
        print(f"maskwatch {' '.join(sys.argv[1:])} imported the workstation side: {', '.join(loaded[:8])}",
              file=sys.stderr)
        sys.exit(3)
    sys.exit(code)
