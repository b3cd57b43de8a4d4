"""``maskwatch bundle``: the command line of :mod:`maskwatch.convert.bundle.build`."""
from __future__ import annotations

import argparse
from pathlib import Path

from maskwatch.convert.bundle.targets import TARGETS


def configure(bundle: argparse.ArgumentParser) -> None:
    bundle.description = ("Wheels for the device, models with their manifest, config, systemd unit and "
                          "install.sh (no network needed on the device; sha256 checked), in one tar.gz.")
    bundle.add_argument("--target", required=True, choices=list(TARGETS), help="device platform and Python")
    bundle.add_argument("--out", type=Path, required=True, help="folder for the archive")
    bundle.add_argument("--config", type=Path, default=None, help="config for the device (default: a commented default)")
    bundle.add_argument("--models", nargs="+", default=None, metavar="NAME",
                        help="model files from the manifest (default: the config's detector and classifier)")
    bundle.add_argument("--source", type=Path, default=None, help="maskwatch source tree (default: the one running)")
    bundle.add_argument("--sign", type=Path, default=None, metavar="KEY",
                        help="SSH private key to sign SHA256SUMS with (ssh-keygen -Y sign); a device with "
                             "/etc/maskwatch/allowed_signers installs only bundles signed by a key listed there")
    bundle.set_defaults(handler=_bundle)


def _bundle(args: argparse.Namespace) -> int:
    from maskwatch.convert.bundle.build import build_bundle

    print(build_bundle(args.target, args.out, args.config, args.models, args.source, args.sign))
    return 0
