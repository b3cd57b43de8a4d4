"""Checking a file's SSH signature (``ssh-keygen -Y``) against the keys a device trusts.

A bundle archive is signed whole (``maskwatch bundle --sign KEY`` writes ``ARCHIVE.sig``) and its
signature is checked here, by the ``maskwatch`` already installed on the device, before anything in
the archive is extracted or run: a changed ``install.sh`` inside it cannot switch the check off.
The trusted keys are an OpenSSH allowed-signers file::

    builder@example.org namespaces="maskwatch-bundle" ssh-ed25519 AAAA...

Example::

    signer = verify(Path("maskwatch-0.1.0-linux-aarch64-py311.tar.gz"))   # its .sig beside it
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import DeployError

#: The ``ssh-keygen -Y`` namespace of bundle signatures: a key's signature for anything else never counts.
SIGNATURE_NAMESPACE = "maskwatch-bundle"
#: Where a device lists the keys it takes bundles from.
ALLOWED_SIGNERS = Path("/etc/maskwatch/allowed_signers")


class SignatureError(DeployError):
    """A file is unsigned, or not signed by a trusted key, or the trusted keys cannot be read."""


def verify(path: Path, signature: Path | None = None, allowed_signers: Path = ALLOWED_SIGNERS) -> str:
    """The principal whose trusted key signed ``path`` (``signature``: default ``PATH.sig``); a one-line
    SignatureError otherwise. Reads the file once, through ``ssh-keygen -Y verify``."""
    path, signature = Path(path), Path(signature) if signature else Path(f"{path}.sig")
    if shutil.which("ssh-keygen") is None:
        raise SignatureError("ssh-keygen not found (apt install openssh-client): it checks bundle signatures")
    if not allowed_signers.is_file():
        raise SignatureError(f"{allowed_signers}: no trusted keys on this device; list the bundle signer's public "
                             f'key there (NAME namespaces="{SIGNATURE_NAMESPACE}" ssh-ed25519 AAAA...)')
    if not path.is_file():
        raise SignatureError(f"{path}: no such file")
    if not signature.is_file():
        raise SignatureError(f"{path}: not signed (no {signature.name}); build it with maskwatch bundle --sign KEY")
    found = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-s", str(signature), "-f", str(allowed_signers)],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    principals = found.stdout.split()
    if found.returncode != 0 or not principals:
        raise SignatureError(f"{path}: {signature.name} is not a signature by a key in {allowed_signers}")
    with open(path, "rb") as data:
        done = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed_signers), "-I", principals[0],
                               "-n", SIGNATURE_NAMESPACE, "-s", str(signature)], stdin=data, capture_output=True,
                              text=True)
    if done.returncode != 0:
        raise SignatureError(f"{path}: not a good signature by {principals[0]} (changed after signing?)")
    return principals[0]
