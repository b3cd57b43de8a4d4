#!/bin/sh
# maskwatch offline installer: run from an unpacked bundle (maskwatch bundle ...). Needs no network.
#
#   sudo ./install.sh                      # /opt/maskwatch, /etc/maskwatch/maskwatch.toml, systemd service
#   MASKWATCH_PREFIX=/tmp/mw MASKWATCH_SYSTEM=0 ./install.sh     # anywhere, no user/systemctl (tests)
#
# Options (flag or environment variable):
#   --prefix DIR     MASKWATCH_PREFIX     venv/ and models/ go here             (/opt/maskwatch)
#   --config FILE    MASKWATCH_CONFIG     the config file                       (/etc/maskwatch/maskwatch.toml)
#   --state-dir DIR  MASKWATCH_STATE_DIR  events and spool; the one writable place (/var/lib/maskwatch)
#   --unit-dir DIR   MASKWATCH_UNIT_DIR   where the systemd unit goes           (/etc/systemd/system)
#   --user NAME      MASKWATCH_USER       the service account                   (maskwatch)
#   --python EXE     PYTHON               the interpreter for the venv          (python3)
#   --no-system      MASKWATCH_SYSTEM=0   no account, no chown, no systemctl
#   --allowed-signers FILE  MASKWATCH_ALLOWED_SIGNERS  keys trusted to sign bundles (/etc/maskwatch/allowed_signers)
#
# Every file is checked against SHA256SUMS first; a changed, missing or extra file, or anything
# that is not a plain file or folder (a symlink), stops the install before anything is written.
# Where the allowed-signers file exists (ssh-keygen's format, namespace maskwatch-bundle),
# SHA256SUMS must carry a good signature by one of its keys (SHA256SUMS.sig, from maskwatch bundle
# --sign). An existing config is kept (the bundle's goes beside it as .new).
#
# Exit status: 0 installed (and, as root, the service enabled: started where systemd runs, or set to
# start at the next boot where systemctl works offline, e.g. building an SD card image in a chroot);
# 2 installed, but the unit could not be enabled (no systemd: a container or a bare chroot; it says so
# and how to enable it on the device); 1 nothing usable installed (a bad bundle, interpreter or pip).
set -eu

PREFIX=${MASKWATCH_PREFIX:-/opt/maskwatch}
CONFIG=${MASKWATCH_CONFIG:-/etc/maskwatch/maskwatch.toml}
STATE_DIR=${MASKWATCH_STATE_DIR:-/var/lib/maskwatch}
UNIT_DIR=${MASKWATCH_UNIT_DIR:-/etc/systemd/system}
SERVICE_USER=${MASKWATCH_USER:-maskwatch}
PYTHON=${PYTHON:-python3}
SYSTEM=${MASKWATCH_SYSTEM:-1}
ALLOWED_SIGNERS=${MASKWATCH_ALLOWED_SIGNERS:-/etc/maskwatch/allowed_signers}
NAMESPACE=maskwatch-bundle
UNIT=maskwatch.service

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --state-dir) STATE_DIR=$2; shift 2 ;;
        --unit-dir) UNIT_DIR=$2; shift 2 ;;
        --user) SERVICE_USER=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --no-system) SYSTEM=0; shift ;;
        --allowed-signers) ALLOWED_SIGNERS=$2; shift 2 ;;
        -h|--help) sed -n '/^set -eu$/q; 2,$p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
for path in "$PREFIX" "$CONFIG" "$STATE_DIR" "$UNIT_DIR" "$ALLOWED_SIGNERS"; do
    case $path in
        /*) ;;
        *) die "$path: paths must be absolute" ;;
    esac
    case $path in
        *[\|\&\\\ ]*) die "$path: spaces, |, & and backslashes are not supported in paths" ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Nothing but plain files and folders (a symlink would pass its checksum and point anywhere),
#    SHA256SUMS signed by a trusted key where the device asks for that, every file the one that was
#    bundled, and nothing added.
odd=$(find . ! -type f ! -type d | sed 's|^\./||' | LC_ALL=C sort)
[ -z "$odd" ] || die "not a plain file or folder: $(echo $odd); nothing installed"
command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"
[ -f SHA256SUMS ] || die "$here/SHA256SUMS missing: not a maskwatch bundle"
if [ -f "$ALLOWED_SIGNERS" ]; then
    command -v ssh-keygen >/dev/null || die "ssh-keygen not found (apt install openssh-client): needed to check the signature $ALLOWED_SIGNERS asks for"
    [ -f SHA256SUMS.sig ] || die "the bundle is not signed (no SHA256SUMS.sig) and $ALLOWED_SIGNERS asks for signed bundles; nothing installed"
    signer=$(ssh-keygen -Y find-principals -s SHA256SUMS.sig -f "$ALLOWED_SIGNERS" 2>/dev/null | head -n 1) || signer=
    if [ -z "$signer" ] || ! ssh-keygen -Y verify -f "$ALLOWED_SIGNERS" -I "$signer" -n "$NAMESPACE" -s SHA256SUMS.sig \
            <SHA256SUMS >"$work/verify" 2>&1; then
        die "SHA256SUMS.sig is not a good signature by a key in $ALLOWED_SIGNERS; nothing installed"
    fi
    say "SHA256SUMS signed by $signer (trusted in $ALLOWED_SIGNERS)"
elif [ -f SHA256SUMS.sig ]; then
    say "signature not checked: no $ALLOWED_SIGNERS here (put the signer's key there to require signed bundles)"
fi
if ! sha256sum -c --strict SHA256SUMS >"$work/check" 2>&1; then
    sed -n 's/: FAILED.*$//p' "$work/check" | sort -u | while read -r bad; do
        echo "install.sh: checksum mismatch: $bad" >&2
    done
    die "the bundle in $here is corrupt or was changed (see SHA256SUMS); nothing installed"
fi
find . -type f ! -path ./SHA256SUMS ! -path ./SHA256SUMS.sig | sed 's|^\./||' | LC_ALL=C sort >"$work/present"
sed 's/^[0-9a-f]\{64\}  //' SHA256SUMS | LC_ALL=C sort >"$work/listed"
extra=$(LC_ALL=C comm -23 "$work/present" "$work/listed")
[ -z "$extra" ] || die "not in SHA256SUMS: $(echo $extra); nothing installed"
say "checked $(wc -l <SHA256SUMS) files against SHA256SUMS"
. ./target.env

# 2. The interpreter matches the wheels.
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON or --python)"
have=$("$PYTHON" -c 'import platform, sys; print("%d.%d %s" % (sys.version_info[0], sys.version_info[1], platform.machine()))')
[ "$have" = "$MW_PYTHON $MW_MACHINE" ] || \
    die "this bundle ($MW_TARGET) is for Python $MW_PYTHON on $MW_MACHINE; $PYTHON is $have"
if [ "$SYSTEM" = 1 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo), or with MASKWATCH_SYSTEM=0 to skip the account and systemd steps"
fi

# 3. The venv, from the bundled wheels only. Where the target takes its pin library from the OS
#    (MW_SYSTEM_SITE=1: e.g. python3-lgpio on Pi OS Trixie) the venv sees the OS's packages, but every
#    bundled wheel is still installed into it (--ignore-installed), never taken from the OS.
mkdir -p "$PREFIX"
venv_flags= pip_flags=
[ "${MW_SYSTEM_SITE:-0}" = 1 ] && venv_flags=--system-site-packages pip_flags=--ignore-installed
if [ ! -x "$PREFIX/venv/bin/python" ]; then
    "$PYTHON" -m venv $venv_flags "$PREFIX/venv" || die "could not create $PREFIX/venv (Debian: apt install python3-venv)"
fi
PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$PREFIX/venv/bin/python" -m pip install --quiet --no-index $pip_flags --find-links "$here/wheels" \
            "maskwatch${MW_EXTRAS:+[$MW_EXTRAS]}==$MW_VERSION" ${MW_PACKAGES:-} \
    || die "pip could not install maskwatch $MW_VERSION from $here/wheels"
say "installed maskwatch $MW_VERSION into $PREFIX/venv"

# 4. Models (replaced as a whole), state folder, config (an existing one is kept).
#    A model the wheel already holds is not in the bundle twice: it is taken from the installed wheel
#    (the runtime checks every model's sha256 against the bundle's manifest at each start).
rm -rf "$PREFIX/models.new"
mkdir -p "$PREFIX/models.new"
cp models/* "$PREFIX/models.new/"
"$PREFIX/venv/bin/python" - models "$PREFIX/models.new" <<'PY' || die "could not take the wheel's models"
import json, shutil, sys
from pathlib import Path

import maskwatch.models

bundled, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheel = Path(maskwatch.models.__file__).parent
for entry in json.loads((bundled / "manifest.json").read_text())["models"].values():
    if not (bundled / entry["file"]).exists():
        shutil.copyfile(wheel / entry["file"], dest / entry["file"])
PY
chmod 644 "$PREFIX/models.new/"*
rm -rf "$PREFIX/models"
mv "$PREFIX/models.new" "$PREFIX/models"
say "models in $PREFIX/models: $(cd "$PREFIX/models" && ls | tr '\n' ' ')"
mkdir -p "$STATE_DIR" "$(dirname "$CONFIG")"
sed "s|/var/lib/maskwatch|$STATE_DIR|g" config/maskwatch.toml >"$work/config"
if [ -f "$CONFIG" ] && ! cmp -s "$work/config" "$CONFIG"; then
    cp "$work/config" "$CONFIG.new"
    say "kept your $CONFIG; the bundle's config is $CONFIG.new"
else
    cp "$work/config" "$CONFIG"
    say "config: $CONFIG"
fi
chmod 640 "$CONFIG"

# 5. The account and the groups the unit names (gpio: GPIO pins, video: cameras).
if [ "$SYSTEM" = 1 ]; then
    for group in gpio video; do
        getent group "$group" >/dev/null || { groupadd --system "$group"; say "created group $group"; }
    done
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin "$SERVICE_USER"
        say "created user $SERVICE_USER"
    fi
    chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
    chgrp "$SERVICE_USER" "$CONFIG"
fi

# 6. The unit, with this install's paths.
case $STATE_DIR in
    /var/lib/*/*) state_unit="/^StateDirectory/d" ;;
    /var/lib/*) state_unit="s|^StateDirectory=maskwatch\$|StateDirectory=${STATE_DIR#/var/lib/}|" ;;
    *) state_unit="/^StateDirectory/d" ;;
esac
mkdir -p "$UNIT_DIR"
sed -e "s|/opt/maskwatch|$PREFIX|g" -e "s|/etc/maskwatch/maskwatch.toml|$CONFIG|g" \
    -e "s|/var/lib/maskwatch|$STATE_DIR|g" -e "s|^User=maskwatch\$|User=$SERVICE_USER|" \
    -e "s|^Group=maskwatch\$|Group=$SERVICE_USER|" -e "$state_unit" \
    systemd/$UNIT >"$work/unit"
cp "$work/unit" "$UNIT_DIR/$UNIT"
chmod 644 "$UNIT_DIR/$UNIT"
say "unit: $UNIT_DIR/$UNIT"
status=0
if [ "$SYSTEM" != 1 ]; then
    say "no system steps asked for: the service is not enabled; to run it: systemctl daemon-reload && systemctl enable --now $UNIT"
elif command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "$UNIT"
    systemctl restart "$UNIT"
    say "service started: systemctl status $UNIT; journalctl -u $UNIT -f"
elif command -v systemctl >/dev/null && systemctl enable "$UNIT" >"$work/enable" 2>&1; then
    say "systemd is not running here: $UNIT is enabled and starts at the next boot"
else
    echo "install.sh: warning: maskwatch is installed, but could not enable $UNIT: systemd is not running here" \
         "(a container or chroot?). On the device: systemctl daemon-reload && systemctl enable --now $UNIT" >&2
    status=2
fi
"$PREFIX/venv/bin/maskwatch" --version
exit $status
