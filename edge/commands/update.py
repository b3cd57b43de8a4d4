"""``maskwatch update``: install a bundle on this device only after its archive's signature checks out.

The installed ``maskwatch`` checks ``ARCHIVE.sig`` against ``/etc/maskwatch/allowed_signers``
before it extracts or runs anything in the archive, then extracts it (plain files and folders only)
and runs its ``install.sh``. Nothing in the archive can switch the check off.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath


def configure(parser: argparse.ArgumentParser) -> None:
    from ..deploy.signature import ALLOWED_SIGNERS

    parser.description = ("Check a bundle archive's signature with the trusted keys, then extract it and run its "
                          "install.sh (as root, like install.sh). Refuses an unsigned or wrongly signed archive "
                          "before anything in it is extracted or run.")
    parser.add_argument("archive", type=Path, help="maskwatch-VERSION-TARGET.tar.gz from maskwatch bundle --sign")
    parser.add_argument("--signature", type=Path, default=None, help="its signature (default: ARCHIVE.sig)")
    parser.add_argument("--allowed-signers", type=Path, default=ALLOWED_SIGNERS,
                        help="the keys this device trusts (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check the signature; extract and install nothing")
    parser.set_defaults(handler=update)


def safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member, when all are plain files or folders under one top folder; else a DeployError."""
    from ..deploy import DeployError

    members = tar.getmembers()
    tops = {PurePosixPath(m.name).parts[0] for m in members if m.name}
    for m in members:
        parts = PurePosixPath(m.name).parts
        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
            raise DeployError(f"{archive}: {m.name!r:.80} is not a plain file or folder inside the bundle")
    if len(tops) != 1:
        raise DeployError(f"{archive}: not one maskwatch bundle folder")
    return members


def update(args: argparse.Namespace) -> int:
    from ..deploy.signature import verify

    signer = verify(args.archive, args.signature, args.allowed_signers)
    print(f"{args.archive}: signed by {signer}", file=sys.stderr)
    if args.check:
        return 0
    with tempfile.TemporaryDirectory(prefix="maskwatch-update-") as scratch:
        with tarfile.open(args.archive, "r:gz") as tar:
            members = safe_members(tar, args.archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(scratch, members=members, **kwargs)
        (root,) = Path(scratch).iterdir()
        return subprocess.run([str(root / "install.sh"), "--allowed-signers", str(args.allowed_signers)]).returncode
