#!/usr/bin/env bash
# A throw-away Mosquitto broker for maskwatch's MQTT tests: 127.0.0.1 only, anonymous, no persistence.
#
#   .ci/mosquitto.sh install       # apt-get install mosquitto when it is missing (root or passwordless sudo)
#   .ci/mosquitto.sh start PORT    # install if needed, start a daemon on 127.0.0.1:PORT, wait until it accepts
#   .ci/mosquitto.sh stop [PORT]   # stop the broker on PORT (every broker this script started when no PORT)
#
# Each broker's config, pid file and log live in ${TMPDIR:-/tmp}/maskwatch-mosquitto.PORT; stop kills only
# the pid recorded there and removes the folder. Exit status is non-zero with a one-line reason on failure.
set -euo pipefail

STATE_ROOT="${TMPDIR:-/tmp}"
PREFIX="maskwatch-mosquitto"

die() { echo "mosquitto.sh: $*" >&2; exit 1; }

broker_bin() {
    command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}

install_broker() {
    [ -n "$(broker_bin)" ] && return 0
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || die "mosquitto is not installed and apt-get needs root (or passwordless sudo)"
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null || die "mosquitto is not installed and apt-get is not available"
    export DEBIAN_FRONTEND=noninteractive
    # The package's own service is not started in containers (policy-rc.d); we never rely on it.
    "${sudo[@]}" apt-get install -y -q mosquitto >/dev/null 2>&1 \
        || { "${sudo[@]}" apt-get update -q >/dev/null 2>&1 && "${sudo[@]}" apt-get install -y -q mosquitto >/dev/null 2>&1; } \
        || die "apt-get install mosquitto failed"
    [ -n "$(broker_bin)" ] || die "mosquitto installed but not found on PATH or in /usr/sbin"
}

# Running, not a zombie: a daemon's parent is init, which may reap it late (containers).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] || return 0
    [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_broker() {
    local port="$1" dir="$STATE_ROOT/$PREFIX.$1"
    [[ "$port" =~ ^[0-9]+$ ]] || die "start needs a numeric PORT, not '$port'"
    install_broker
    [ -f "$dir/mosquitto.pid" ] && alive "$(cat "$dir/mosquitto.pid")" \
        && die "a broker started by this script already runs on port $port (pid $(cat "$dir/mosquitto.pid"))"
    port_open "$port" && die "port $port is already in use"
    rm -rf "$dir" && mkdir -p "$dir"
    local user_line=""
    # As root, mosquitto drops to user 'mosquitto' unless told otherwise; stay root so it can write $dir.
    [ "$(id -u)" = 0 ] && user_line="user root"
    cat > "$dir/mosquitto.conf" <<EOF
$user_line
listener $port 127.0.0.1
allow_anonymous true
persistence false
pid_file $dir/mosquitto.pid
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
EOF
    "$(broker_bin)" -d -c "$dir/mosquitto.conf" 2>>"$dir/stderr.log" || die "mosquitto failed to start (see $dir/mosquitto.log)"
    for _ in $(seq 100); do
        port_open "$port" && [ -s "$dir/mosquitto.pid" ] && { echo "mosquitto on 127.0.0.1:$port (pid $(cat "$dir/mosquitto.pid"))"; return 0; }
        sleep 0.1
    done
    stop_broker "$port" || true
    die "mosquitto did not accept connections on 127.0.0.1:$port within 10 s"
}

stop_broker() {
    local dir="$STATE_ROOT/$PREFIX.$1" pid
    [ -d "$dir" ] || return 0
    if [ -s "$dir/mosquitto.pid" ]; then
        pid="$(cat "$dir/mosquitto.pid")"
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do alive "$pid" || break; sleep 0.05; done
            alive "$pid" && kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    install) install_broker ;;
    start) [ $# -eq 2 ] || die "usage: $0 start PORT"; start_broker "$2" ;;
    stop)
        if [ $# -ge 2 ]; then stop_broker "$2"
        else for dir in "$STATE_ROOT/$PREFIX".*; do [ ! -d "$dir" ] || stop_broker "${dir##*.}"; done; fi ;;
    *) die "usage: $0 install | start PORT | stop [PORT]" ;;
esac
