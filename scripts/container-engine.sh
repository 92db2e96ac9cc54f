#!/usr/bin/env bash
# A container engine for moorage's docker runtime on Debian or Ubuntu, systemd or
# not, and images built without a registry.
#
#   scripts/container-engine.sh engine [--cgroupfs]
#       For `make serve`: a Docker that already answers (DOCKER_HOST, else
#       /var/run/docker.sock) is used as it is; otherwise Podman and runc are
#       installed and Podman's Docker-compatible service is started on
#       /run/moorage-podman.sock. On a host without systemd (or with --cgroupfs)
#       /etc/containers/containers.conf is written so that Podman runs there.
#       The last line of stdout is the MOORAGE_DOCKER_HOST to use.
#   scripts/container-engine.sh image NAME [ENGINE_URL]
#       Builds Debian bookworm (minbase, python3, python3-flask) with debootstrap
#       from a Debian mirror (no image registry) and imports it into the engine at
#       ENGINE_URL (default unix:///run/moorage-podman.sock) as NAME.
#   scripts/container-engine.sh [setup]
#       For the test suite: Podman's service on /run/moorage-ci-podman.sock (always
#       with the containers.conf above) and the test image, python:3.10-slim (the
#       same debootstrap build, under the name the tests use).
#   scripts/container-engine.sh stop [engine|setup]
#       Stops the service `engine` started (the default), or the test suite's
#       (`setup`); never a service this script did not start.
#
# Every command is idempotent: run it again and it finds its work done. Run as
# root (it installs packages and writes /etc/containers and /run). Progress goes
# to stderr. Typical uses:
#
#   sudo scripts/container-engine.sh engine
#   export MOORAGE_TEST_DOCKER_HOST=$(sudo scripts/container-engine.sh | tail -n 1)
#
# Settings (environment): MOORAGE_PODMAN_SOCKET (engine's socket, default
# /run/moorage-podman.sock), MOORAGE_CI_PODMAN_SOCKET (setup's, default
# /run/moorage-ci-podman.sock), MOORAGE_DEBIAN_MIRROR (debootstrap's mirror), and
# MOORAGE_TEST_IMAGE (default python:3.10-slim, the name the tests use; another
# name tries the build without touching an image that exists).
set -euo pipefail

SERVICE_WAIT_S=30
DEFAULT_ENGINE_SOCKET=/run/moorage-podman.sock

# The socket this run works on, and the files kept beside it.
use_socket() {
    SOCKET=$1
    URL="unix://$SOCKET"
    PIDFILE="${SOCKET%.sock}.pid"
    SERVICE_LOG="${SOCKET%.sock}.log"
}
use_socket "${MOORAGE_CI_PODMAN_SOCKET:-/run/moorage-ci-podman.sock}"

# What the docker runtime needs besides Podman: runc to run containers, catatonit
# for `init: true`, iptables to publish ports; debootstrap builds images.
ENGINE_PACKAGES=(podman runc catatonit iptables)
IMAGE_PACKAGES=(debootstrap)

IMAGE=${MOORAGE_TEST_IMAGE:-python:3.10-slim}
SUITE=bookworm
INCLUDE=python3,python3-flask
CACHE_DIR=/var/cache/moorage-test-image
ROOTFS_TAR="$CACHE_DIR/$SUITE-minbase-${INCLUDE//,/-}.tar"

CONF=/etc/containers/containers.conf
USAGE="usage: $0 [setup|engine [--cgroupfs]|image NAME [ENGINE_URL]|stop [engine|setup]]"
# Without systemd (a container, WSL, a minimal VM): cgroupfs; runc rather than
# crun; and no default ulimits, which an unprivileged container may not be
# allowed to raise.
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
    for pkg in "$@"; do
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
    say "building the image's root filesystem with debootstrap ($SUITE, $INCLUDE; about a minute)"
    quietly "debootstrap $SUITE into $dir" \
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir" \
        ${MOORAGE_DEBIAN_MIRROR:+"$MOORAGE_DEBIAN_MIRROR"}
    mkdir -p "$CACHE_DIR"
    quietly "pack the root filesystem into $ROOTFS_TAR" tar -C "$dir" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$dir"
    trap - EXIT
}

# Whether the engine at $URL is Podman (its own API answers) rather than Docker.
is_podman() { [[ $(http_status /libpod/_ping) == 200 ]]; }

# The command line that talks to the engine at $URL: podman for Podman, docker
# for Docker.
engine_cli() {
    if is_podman; then
        command -v podman >/dev/null 2>&1 ||
            die "the engine at $URL is Podman but there is no podman command; run: apt-get install podman"
        ENGINE_CLI=(podman --url "$URL")
    else
        command -v docker >/dev/null 2>&1 ||
            die "the engine at $URL is Docker but there is no docker command; install Docker's CLI"
        ENGINE_CLI=(docker --host "$URL")
    fi
}

# Imports the debootstrap build as $1 unless the engine has it, then checks that
# a container of it runs as the docker runtime runs one (init, sh -c) and that
# python3 there runs the program $2, which prints ok.
ensure_image() {
    local image=$1 check=$2 out
    engine_cli
    if [[ $(http_status "/images/$image/json") != 200 ]]; then
        if [[ -s $ROOTFS_TAR ]]; then
            say "reusing the cached root filesystem $ROOTFS_TAR"
        else
            build_rootfs
        fi
        say "importing $ROOTFS_TAR as $image"
        quietly "${ENGINE_CLI[0]} import $image" "${ENGINE_CLI[@]}" import - "$image" <"$ROOTFS_TAR"
        [[ $(http_status "/images/$image/json") == 200 ]] ||
            die "the engine at $URL still has no $image after the import"
    else
        say "the engine has $image (remove it with ${ENGINE_CLI[*]} rmi $image to build it again)"
    fi
    if ! out=$("${ENGINE_CLI[@]}" run --rm --init "$image" /bin/sh \
        -c "echo ok | base64 | base64 -d >/dev/null && python3 -c \"$check\"" 2>&1) ||
        [[ $out != *ok ]]; then
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
        die "the engine cannot run a container of $image with what it needs (output above); if that image came from a registry, remove it (${ENGINE_CLI[*]} rmi $image) and run this script again"
    fi
    say "a container of $image runs python3"
}

require_root() {
    ((EUID == 0)) || die "run as root (sudo $0 $*): it installs packages and writes /etc/containers and /run"
}

# Whether this host runs systemd (sd_booted(3)): Podman's defaults then work.
has_systemd() { [[ -d /run/systemd/system ]]; }

# An engine that already answers at DOCKER_HOST or Docker's usual socket; prints its URL.
docker_already_there() {
    local candidate saved=$SOCKET
    for candidate in "${DOCKER_HOST:-}" unix:///var/run/docker.sock; do
        [[ $candidate == unix://* ]] || continue
        use_socket "${candidate#unix://}"
        if answers; then
            echo "$URL"
            use_socket "$saved"
            return 0
        fi
    done
    use_socket "$saved"
    return 1
}

cmd_engine() {
    local cgroupfs=0 found
    while (($#)); do
        case $1 in
        --cgroupfs) cgroupfs=1 ;;
        *) die "unknown option $1; usage: $0 engine [--cgroupfs]" ;;
        esac
        shift
    done
    use_socket "${MOORAGE_PODMAN_SOCKET:-$DEFAULT_ENGINE_SOCKET}"
    if found=$(docker_already_there); then
        say "a container engine already answers at $found: moorage can use it (nothing installed or started)"
        echo "$found"
        return 0
    fi
    require_root engine
    install_packages "${ENGINE_PACKAGES[@]}"
    if ((cgroupfs)) || ! has_systemd; then
        ((cgroupfs)) || say "no systemd on this host: Podman gets cgroupfs and runc"
        write_conf
    fi
    start_service
    say "next: MOORAGE_DOCKER_HOST=$URL make serve"
    echo "$URL"
}

cmd_image() {
    (($# >= 1 && $# <= 2)) && [[ -n $1 ]] ||
        die "usage: $0 image NAME [ENGINE_URL], e.g. $0 image localhost/moorage-python:bookworm"
    local image=$1 url=${2:-unix://${MOORAGE_PODMAN_SOCKET:-$DEFAULT_ENGINE_SOCKET}}
    [[ $url == unix://* ]] || die "ENGINE_URL must be unix:///path/to.sock, not $url"
    use_socket "${url#unix://}"
    answers || die "no container engine answers at $URL; run: sudo $0 engine"
    require_root image
    install_packages "${IMAGE_PACKAGES[@]}"
    ensure_image "$image" "print('ok')"
    say "next: create an endpoint with \"image_url\": \"$image\""
    echo "$image"
}

cmd_setup() {
    require_root
    install_packages "${ENGINE_PACKAGES[@]}" "${IMAGE_PACKAGES[@]}"
    write_conf
    start_service
    # The tests need Flask; an image of that name from a registry would lack it.
    ensure_image "$IMAGE" "import flask; print('ok')"
    echo "$URL"
}

main() {
    local command=${1:-setup}
    (($#)) && shift
    case $command in
    setup) cmd_setup ;;
    engine) cmd_engine "$@" ;;
    image) cmd_image "$@" ;;
    stop)
        case ${1:-engine} in
        engine) use_socket "${MOORAGE_PODMAN_SOCKET:-$DEFAULT_ENGINE_SOCKET}" ;;
        setup) ;;
        *) die "unknown service $1; usage: $0 stop [engine|setup]" ;;
        esac
        stop_service
        ;;
    -h | --help | help) printf '%s\n' "$USAGE" ;;
    *) die "$USAGE" ;;
    esac
}

main "$@"
