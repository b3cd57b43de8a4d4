#!/usr/bin/env bash
# The emulated arm64 device: .ci/run's stage "arm64 emulated device" (also runnable alone, as root,
# after .ci/run has made .venv-test):
#
#   bash .ci/arm64.sh
#
# A Raspberry Pi OS Bookworm-like system (Debian 12 arm64 with python3 and python3-venv, built with
# mmdebstrap from the Debian archive and cached as a tarball in .cache/arm64/) runs under QEMU
# user-mode emulation in a chroot with no network. The linux-aarch64-py311 bundle, built here from
# this checkout and signed with a throw-away key the device trusts, is unpacked and installed in it
# as on a Pi (./install.sh as root, offline; its signature verified with ssh-keygen); then
# `maskwatch doctor`, `maskwatch run` on the built-in sample with mock pins (events and pin
# histories checked), and `maskwatch predict` on the sample and 3 real scenes with every model the
# bundle ships, compared with the same command on x86 (.ci/arm64_parity.py: same faces, boxes within
# $BOX_PX pixels, same labels).
#
# The emulated CPU is a Pi 5's Cortex-A76 (QEMU_CPU): qemu's default "max" CPU miscomputes int8 in
# LiteRT. An ARM /proc/cpuinfo (.ci/cortex-a76.cpuinfo, one entry per host CPU) is bind-mounted
# over the host's: qemu 7.2 passes the x86 one through, and ONNX Runtime's and LiteRT's CPU
# detection crash on it. Timings under emulation are not a board's: nothing here is published.
#
# Exits 0 with "arm64 stage skipped: <reason>" when emulation cannot be set up (not root, no qemu,
# no binfmt_misc, no rootfs cache and no Debian archive); 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=$REPO/.cache/arm64
ROOT=$CACHE/root                     # the emulated system, unpacked fresh from the tarball each run
TARGET=linux-aarch64-py311
SUITE=bookworm
PACKAGES=python3,python3-venv,passwd,openssh-client   # passwd: install.sh's useradd; ssh-keygen: bundle signatures
MIRROR=${MASKWATCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export QEMU_CPU=${QEMU_CPU:-cortex-a76}
BOX_PX=2                             # largest box corner difference allowed between x86 and arm64
UNSURE=0.7                           # a label both machines give less than this may differ (a face on the fence)
FRAMES=30
MODELS="retinaface_mask_mnv2_320_int8.tflite mask_mnv2_96_int8.tflite retinaface_mask_mnv2_fp32.onnx mask_mnv2_96_fp32.onnx"
SCENES_DIR=$REPO/../shared/data/andrewmvd/images
SCENES="maksssksksss0.png maksssksksss1.png maksssksksss10.png"
MW=$REPO/.venv-test/bin/maskwatch

skip() { echo "arm64 stage skipped: $*"; exit 0; }
fail() { echo "arm64: FAIL: $*" >&2; exit 1; }
say() { echo "arm64: $*"; }
step_started=$SECONDS
lap() { say "$1 ($((SECONDS - step_started)) s)"; step_started=$SECONDS; }

# ------------------------------------------------------------------ can this machine emulate arm64?
[ "$(id -u)" = 0 ] || skip "needs root (chroot, mounts, binfmt_misc)"
[ "$(uname -m)" = x86_64 ] || skip "the host is $(uname -m), not x86_64 (this stage emulates arm64 on x86)"
[ -x "$MW" ] || fail "$MW missing: run .ci/run (it makes .venv-test) first"
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || \
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}
command -v qemu-aarch64-static >/dev/null || apt_install qemu-user-static binfmt-support || true
command -v qemu-aarch64-static >/dev/null || skip "qemu-aarch64-static not found and apt-get could not install qemu-user-static"
BINFMT=/proc/sys/fs/binfmt_misc
[ -e $BINFMT/register ] || mount -t binfmt_misc binfmt_misc $BINFMT 2>/dev/null || true
[ -e $BINFMT/register ] || skip "binfmt_misc is not available (mount -t binfmt_misc binfmt_misc $BINFMT failed)"
if ! grep -qs '^enabled' $BINFMT/qemu-aarch64; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if ! grep -qs '^enabled' $BINFMT/qemu-aarch64; then   # no binfmt-support: register qemu ourselves (F: works in a chroot)
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
        >$BINFMT/register 2>/dev/null || true
fi
grep -qs '^enabled' $BINFMT/qemu-aarch64 || skip "could not register qemu-aarch64 with binfmt_misc"
command -v ssh-keygen >/dev/null || apt_install openssh-client || true
command -v ssh-keygen >/dev/null || skip "ssh-keygen not found (openssh-client): the stage signs its bundle"
say "qemu $(qemu-aarch64-static --version | sed -n '1s/.*version \([^ ]*\).*/\1/p'), CPU $QEMU_CPU"

# ------------------------------------------------------------------ the root filesystem (cached)
mkdir -p "$CACHE"
key=$(printf '%s %s %s' "$PACKAGES" "$SUITE" minbase | sha256sum | cut -c1-12)
tarball=$CACHE/rootfs-$SUITE-arm64-$key.tar.gz
if [ ! -f "$tarball" ]; then
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap || true
    command -v mmdebstrap >/dev/null || skip "no cached rootfs ($tarball) and mmdebstrap could not be installed"
    say "building the $SUITE arm64 rootfs (cold: several minutes)"
    rm -f "$CACHE"/rootfs-*.part.tar.gz
    if ! mmdebstrap --quiet --arch=arm64 --variant=minbase --include="$PACKAGES" --aptopt='Acquire::Retries "3"' \
            "$SUITE" "$CACHE/rootfs-$key.part.tar.gz" "$MIRROR" >"$CACHE/mmdebstrap.log" 2>&1; then
        rm -f "$CACHE/rootfs-$key.part.tar.gz"
        tail -3 "$CACHE/mmdebstrap.log" >&2
        skip "no cached rootfs and mmdebstrap could not build one from $MIRROR (log: $CACHE/mmdebstrap.log)"
    fi
    mv "$CACHE/rootfs-$key.part.tar.gz" "$tarball"
    lap "rootfs built: $tarball, $(du -m "$tarball" | cut -f1) MB"
else
    say "rootfs from the cache: $tarball"
fi

unmount_all() {   # every mount under $ROOT, deepest first
    { grep -o " $ROOT/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
unmount_all
rm -rf --one-file-system "$ROOT"
mkdir -p "$ROOT"
tar -xzf "$tarball" -C "$ROOT"
trap 'unmount_all' EXIT
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys"
mkdir -p "$ROOT/dev/shm" && mount -t tmpfs tmpfs "$ROOT/dev/shm"
for _ in $(seq "$(nproc)"); do cat .ci/cortex-a76.cpuinfo; done | awk '/^processor/ {$0 = "processor\t: " n++} 1' \
    >"$CACHE/cpuinfo"
mount --bind "$CACHE/cpuinfo" "$ROOT/proc/cpuinfo"
# In the chroot: a clean environment, no network at all (its own empty network namespace).
device() { timeout 1200 unshare --net chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" "$@"; }
[ "$(device uname -m)" = aarch64 ] || skip "the chroot does not run as aarch64 ($(device uname -m 2>&1 || true))"
lap "emulated system ready: $(device python3 --version), $(device sh -c 'grep -c ^processor /proc/cpuinfo') CPUs"

# ------------------------------------------------------------------ the bundle, installed as on a Pi
rm -rf "$CACHE/dist" "$CACHE/signing"
mkdir -p "$CACHE/signing"   # a throw-away signing key; the device trusts it in /etc/maskwatch/allowed_signers
ssh-keygen -q -t ed25519 -N "" -C ci@maskwatch -f "$CACHE/signing/key"
mkdir -p "$ROOT/etc/maskwatch"
echo "ci@maskwatch namespaces=\"maskwatch-bundle\" $(cat "$CACHE/signing/key.pub")" >"$ROOT/etc/maskwatch/allowed_signers"
# shellcheck disable=SC2086
"$MW" bundle --target "$TARGET" --out "$CACHE/dist" --models $MODELS --sign "$CACHE/signing/key" >"$CACHE/bundle.log" 2>&1 \
    || { tail -3 "$CACHE/bundle.log" >&2; fail "maskwatch bundle --target $TARGET failed (log: $CACHE/bundle.log)"; }
archive=$(ls "$CACHE"/dist/maskwatch-*-$TARGET.tar.gz)
name=$(basename "$archive" .tar.gz)
cp "$archive" "$archive.sig" "$ROOT/root/"
lap "bundle: $(basename "$archive"), $(du -m "$archive" | cut -f1) MB"

# a first install as docs/deployment.md says: the archive's signature checked before it is opened
set +e
device sh -c "cd /root && ssh-keygen -Y verify -f /etc/maskwatch/allowed_signers -I ci@maskwatch -n maskwatch-bundle \
    -s $name.tar.gz.sig < $name.tar.gz && tar -xzf $name.tar.gz && ./$name/install.sh" >"$CACHE/install.log" 2>&1
rc=$?
set -e
sed 's/^/    /' "$CACHE/install.log"
# No systemd in a chroot: installed, the unit written but not enabled, and exit status 2 (install.sh --help).
[ "$rc" = 2 ] || fail "install.sh exited $rc (expected 2: installed, unit not enabled without systemd)"
grep -q "could not enable" "$CACHE/install.log" || fail "install.sh did not say that it could not enable the unit"
grep -q "SHA256SUMS signed by ci@maskwatch" "$CACHE/install.log" || fail "install.sh did not verify the bundle's signature"
grep -q "Good \"maskwatch-bundle\" signature for ci@maskwatch" "$CACHE/install.log" || fail "ssh-keygen did not verify the archive"
for model in $MODELS manifest.json; do
    [ -f "$ROOT/opt/maskwatch/models/$model" ] || fail "/opt/maskwatch/models/$model missing after install.sh"
done
[ -f "$ROOT/etc/systemd/system/maskwatch.service" ] || fail "the unit was not written"
device id maskwatch >/dev/null || fail "install.sh did not create the maskwatch user"
lap "install.sh: signature verified, installed offline (exit 2: no systemd here, as documented)"

# ------------------------------------------------------------------ doctor, and a run with mock pins
# maskwatch as installed, run through tests/no_toolchain.py: it exits 3 if a device command imports the
# workstation side (maskwatch.convert, maskwatch.benchmarks, TensorFlow)
cp tests/no_toolchain.py "$ROOT/root/"
MWD="/opt/maskwatch/venv/bin/python /root/no_toolchain.py"
ENV_MODELS=MASKWATCH_MODELS=/opt/maskwatch/models    # as the unit sets it
CONF=(--config /etc/maskwatch/maskwatch.toml --set source.spec=sample)
set +e
device env "$ENV_MODELS" $MWD doctor "${CONF[@]}" >"$CACHE/doctor.log" 2>&1
rc=$?
set -e
sed 's/^/    /' "$CACHE/doctor.log"
[ "$rc" = 0 ] || fail "maskwatch doctor exited $rc"
for line in "ok   LiteRT" "ok   ONNX Runtime"; do
    grep -q "^$line" "$CACHE/doctor.log" || fail "doctor printed no '$line' line"
done
# lgpio is bundled and loads; there is no GPIO chip under emulation, and doctor must say so, not crash
grep -q "GPIO pin factory: lgpio [0-9.]* loads, but no GPIO chip is present" "$CACHE/doctor.log" \
    || fail "doctor did not report lgpio loading with no GPIO chip"
for model in $MODELS; do
    grep -q "^ok   model $model" "$CACHE/doctor.log" || fail "doctor did not check model $model"
done
lap "doctor: runtimes load, every bundled model checks out, lgpio loads (no GPIO chip here)"

PINS=(--gpio gpiozero --set signal.red_pin=17 --set signal.green_pin=27 --set signal.buzzer_pin=22)
set +e
device env "$ENV_MODELS" GPIOZERO_PIN_FACTORY=mock $MWD run "${CONF[@]}" "${PINS[@]}" --max-frames $FRAMES \
    --events /root/events.jsonl >"$CACHE/run.log" 2>&1
rc=$?
set -e
sed 's/^/    /' "$CACHE/run.log" | grep -v XNNPACK
[ "$rc" = 0 ] || fail "maskwatch run exited $rc"
rm -f "$CACHE/events-x86.jsonl"   # the events log appends
env GPIOZERO_PIN_FACTORY=mock MASKWATCH_MODELS="$REPO/models" "$MW" run --set source.spec=sample "${PINS[@]}" \
    --max-frames $FRAMES --events "$CACHE/events-x86.jsonl" >"$CACHE/run-x86.log" 2>&1 || fail "the x86 run failed"
python3 - "$CACHE/events-x86.jsonl" "$ROOT/root/events.jsonl" "$CACHE/run.log" <<'PY' || fail "events or pins differ"
import json, re, sys

def events(path):
    return [(e["type"], e.get("label") or e.get("state")) for e in map(json.loads, open(path)) if e["type"] != "summary"]

x86, arm = events(sys.argv[1]), events(sys.argv[2])
print(f"    events on arm64: {arm}")
assert ("new", "without_mask") in arm and ("state", "unmasked") in arm, f"no unmasked alarm for the sample: {arm}"
assert arm == x86, f"arm64 events {arm} differ from x86's {x86}"
log = open(sys.argv[3]).read()
for pin, role in ((17, "red"), (22, "buzzer")):
    history = re.search(rf"mock pin GPIO{pin} \({role}\): (.*)", log)
    assert history and re.search(r" 1@", history.group(1)), f"the {role} pin never went on: {history and history.group(1)}"
green = re.search(r"mock pin GPIO27 \(green\): (.*)", log)
assert green and " 1@" not in green.group(1), f"the green pin went on for an unmasked face: {green and green.group(1)}"
print("    pins: red and buzzer went on, green stayed off; events match x86")
PY
lap "run: $FRAMES frames with mock pins, same events as x86"

# ------------------------------------------------------------------ parity with x86: every shipped model
mkdir -p "$ROOT/root/parity"
cp "$(.venv-test/bin/python -c 'from maskwatch.edge.sample import sample_image; print(sample_image())')" "$ROOT/root/parity/"
if [ -d "$SCENES_DIR" ]; then
    for scene in $SCENES; do cp "$SCENES_DIR/$scene" "$ROOT/root/parity/"; done
else
    say "parity on the sample only: $SCENES_DIR is absent (../shared), the 3 real scenes are skipped"
fi
failed=0
for pair in "retinaface_mask_mnv2_320_int8.tflite mask_mnv2_96_int8.tflite" \
            "retinaface_mask_mnv2_fp32.onnx mask_mnv2_96_fp32.onnx"; do
    set -- $pair
    tag=${1%%.*}
    device env "$ENV_MODELS" $MWD predict --models-dir /opt/maskwatch/models --detector "$1" --classifier "$2" \
        --jsonl "/root/parity/$tag.jsonl" /root/parity/ >"$CACHE/predict-$tag.log" 2>&1 \
        || { tail -3 "$CACHE/predict-$tag.log"; fail "predict with $1 + $2 failed on arm64"; }
    "$MW" predict --models-dir "$REPO/models" --detector "$1" --classifier "$2" --jsonl "$CACHE/x86-$tag.jsonl" \
        "$ROOT/root/parity/" >/dev/null 2>&1 || fail "predict with $1 + $2 failed on x86"
    python3 .ci/arm64_parity.py "$CACHE/x86-$tag.jsonl" "$ROOT/root/parity/$tag.jsonl" --box-px $BOX_PX \
        --unsure $UNSURE --what "$1 + $2" || failed=1
done
[ "$failed" = 0 ] || fail "arm64 and x86 disagree (above)"
lap "parity: every bundled model gives x86's faces (boxes within $BOX_PX px) and labels (either, where both are under $UNSURE)"
say "passed"
