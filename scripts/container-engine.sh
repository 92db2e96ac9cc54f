#!/usr/bin/env bash
# A real container engine for the docker runtime's tests, on a machine that may
# have none: Podman's Docker-compatible API service on a socket of its own, and
# the image the tests run, python:3.10-slim (Debian bookworm minbase with python3
# and python3-flask, built with debootstrap, so no registry is needed).
#
#   scripts/container-engine.sh         set up, or find set up (idempotent); the
#                                       last line of stdout is the socket URL
#   scripts/container-engine.sh stop    stop the service this script started
#
# Run as root (it installs packages and writes /etc/containers and /run). Progress
# goes to stderr. Typical use:
#
#   export MOORAGE_TEST_DOCKER_HOST=$(sudo scripts/container-engine.sh | tail -n 1)
#
# Settings (environment): MOORAGE_CI_PODMAN_SOCKET (default
# /run/moorage-ci-podman.sock), MOORAGE_DEBIAN_MIRROR (debootstrap's mirror), and
# MOORAGE_TEST_IMAGE (default python:3.10-slim, the name the tests use; another
# name tries the build without touching an image that exists).
set -euo pipefail

SOCKET=${MOORAGE_CI_PODMAN_SOCKET:-/run/moorage-ci-podman.sock}
URL="unix://$SOCKET"
PIDFILE="${SOCKET%.sock}.pid"
SERVICE_LOG="${SOCKET%.sock}.log"
SERVICE_WAIT_S=30

# What the docker runtime needs besides Podman: runc to run containers, catatonit
# for `init: true`, iptables to publish ports; debootstrap builds the image.
PACKAGES=(podman runc catatonit iptables debootstrap)

IMAGE=${MOORAGE_TEST_IMAGE:-python:3.10-slim}
SUITE=bookworm
INCLUDE=python3,python3-flask
CACHE_DIR=/var/cache/moorage-test-image
ROOTFS_TAR="$CACHE_DIR/$SUITE-minbase-${INCLUDE//,/-}.tar"

CONF=/etc/containers/containers.conf
# No systemd in a CI container: cgroupfs; runc rather than crun; and no default
# ulimits, which an unprivileged CI container may not be allowed to raise.
CONF_WANTED='[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"'

say() { printf '[container-engine] %s\n' "$*" >&2; }
die() {
    printf '[container-engine] FAILED: %s\n' "$*" >&2
    exit 1
}

# Runs a command with its output kept in a log; on failure shows the log's tail and dies.
quietly() {
    local what=$1 out
    shift
    out=$(mktemp /tmp/moorage-container-engine.XXXXXX)
    if ! "$@" >"$out" 2>&1; then
        tail -n 30 "$out" | sed 's/^/    /' >&2
        rm -f "$out"
        die "$what (command: $*)"
    fi
    rm -f "$out"
}

# The engine's HTTP status for GET PATH over the socket; 000 when nothing answers.
http_status() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$SOCKET" "http://d$1" ||
            true
    else
        python3 - "$SOCKET" "$1" <<'PY'
import http.client, socket, sys

class UnixConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(sys.argv[1])

try:
    connection = UnixConnection("d", timeout=5)
    connection.request("GET", sys.argv[2])
    print(connection.getresponse().status, end="")
except OSError:
    print("000", end="")
PY
    fi
}

answers() { [[ $(http_status /_ping) == 200 ]]; }

# The pid of the service this script started, when it still runs.
our_service() {
    local pid
    [[ -f $PIDFILE ]] || return 1
    pid=$(cat "$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'podman system service' || return 1
    echo "$pid"
}

stop_service() {
    local pid
    if pid=$(our_service); then
        say "stopping the podman service (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$SOCKET"
    fi
    rm -f "$PIDFILE"
}

install_packages() {
    local missing=() pkg updated=0
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "install ${missing[*]} (no apt-get here: this script knows Debian and Ubuntu only)"
    # Update the package lists only where they do not know a package we need.
    for pkg in "${missing[@]}"; do
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            say "apt-get update (the package lists do not know $pkg)"
            quietly "apt-get update" apt-get update
            updated=1
            break
        fi
    done
    say "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        ((updated)) || {
            say "apt-get install failed; updating the package lists and retrying"
            quietly "apt-get update" apt-get update
        }
        quietly "apt-get install ${missing[*]}" \
            env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}

# Whether FILE holds the wanted settings; blank lines and edge spaces do not count.
conf_is_wanted() {
    local squeeze='s/^[[:space:]]*//; s/[[:space:]]*$//; /^$/d'
    [[ -f $1 ]] && [[ $(sed "$squeeze" "$1") == "$(sed "$squeeze" <<<"$CONF_WANTED")" ]]
}

write_conf() {
    conf_is_wanted "$CONF" && return 0
    mkdir -p "$(dirname "$CONF")"
    if [[ -f $CONF && ! -f $CONF.moorage-orig ]]; then
        cp -p "$CONF" "$CONF.moorage-orig"
        say "kept the previous $CONF as $CONF.moorage-orig"
    fi
    printf '%s\n' "$CONF_WANTED" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    say "wrote $CONF"
    # A service already running read the old settings: restart ours.
    if our_service >/dev/null; then
        stop_service
    elif answers; then
        say "warning: a service not started by this script answers at $URL; it keeps its old settings until restarted"
    fi
}

start_service() {
    if answers; then
        say "a container engine already answers at $URL"
        return 0
    fi
    local pid
    if ! pid=$(our_service); then
        mkdir -p "$(dirname "$SOCKET")"
        rm -f "$SOCKET" # a stale socket of a service that is gone
        say "starting podman system service at $URL (log: $SERVICE_LOG)"
        setsid podman system service --time=0 "$URL" </dev/null >"$SERVICE_LOG" 2>&1 &
        pid=$!
        echo "$pid" >"$PIDFILE"
    fi
    local deadline=$((SECONDS + SERVICE_WAIT_S))
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$SERVICE_LOG" | sed 's/^/    /' >&2 || true
            rm -f "$PIDFILE"
            die "podman system service exited before answering at $URL (log above)"
        fi
        ((SECONDS < deadline)) ||
            die "podman system service (pid $pid) did not answer at $URL within ${SERVICE_WAIT_S} s; see $SERVICE_LOG"
        sleep 0.2
    done
    say "podman answers at $URL"
}

build_rootfs() {
    local dir
    dir=$(mktemp -d /var/tmp/moorage-test-rootfs.XXXXXX)
    # shellcheck disable=SC2064 # expand $dir now: it is local
    trap "rm -rf '$dir'" EXIT
    say "building the test image's root filesystem with debootstrap ($SUITE, $INCLUDE; about a minute)"
    quietly "debootstrap $SUITE into $dir" \
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir" \
        ${MOORAGE_DEBIAN_MIRROR:+"$MOORAGE_DEBIAN_MIRROR"}
    mkdir -p "$CACHE_DIR"
    quietly "pack the root filesystem into $ROOTFS_TAR" tar -C "$dir" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$dir"
    trap - EXIT
}

ensure_image() {
    if [[ $(http_status "/images/$IMAGE/json") != 200 ]]; then
        if [[ -s $ROOTFS_TAR ]]; then
            say "reusing the cached root filesystem $ROOTFS_TAR"
        else
            build_rootfs
        fi
        say "importing $ROOTFS_TAR as $IMAGE"
        quietly "podman import $IMAGE" podman --url "$URL" import - "$IMAGE" <"$ROOTFS_TAR"
        [[ $(http_status "/images/$IMAGE/json") == 200 ]] ||
            die "the engine at $URL still has no $IMAGE after the import"
    else
        say "the engine has $IMAGE"
    fi
    # The engine runs it as the docker runtime will (init, sh -c), and it has what
    # the tests need; an image of that name from a registry would lack flask.
    local smoke="import flask; print('ok')" out
    if ! out=$(podman --url "$URL" run --rm --init "$IMAGE" /bin/sh \
        -c "echo ok | base64 | base64 -d >/dev/null && python3 -c \"$smoke\"" 2>&1) ||
        [[ $out != *ok ]]; then
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
        die "the engine cannot run a container of $IMAGE with python3 and flask (output above); if that image came from a registry, remove it (podman rmi $IMAGE) and run this script again"
    fi
    say "a container of $IMAGE runs, with python3 and flask"
}

main() {
    case ${1:-setup} in
    setup) ;;
    stop)
        stop_service
        return 0
        ;;
    *) die "usage: $0 [setup|stop]" ;;
    esac
    ((EUID == 0)) || die "run as root (sudo $0): it installs packages and writes /etc/containers and /run"
    install_packages
    write_conf
    start_service
    ensure_image
    echo "$URL"
}

main "$@"
