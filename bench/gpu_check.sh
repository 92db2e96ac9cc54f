#!/usr/bin/env bash
# GPU check on a host with NVIDIA GPUs (docs/gpus.md), under 5 minutes:
#   1. starts moorage serve (process runtime, a fresh MOORAGE_HOME) and lists the
#      flavors it discovered through NVML;
#   2. as a normal user (so each replica runs in the sandbox), starts an endpoint of
#      two replicas with gpu_num 1 on the first GPU flavor and prints, from each
#      replica's log, the GPU UUID it is given (CUDA_VISIBLE_DEVICES), the GPU device
#      files its /dev holds and what nvidia-smi -L finds from inside;
#   3. prints the GPU gauges /metrics shows for those replicas (utilisation, memory,
#      temperature, power, labelled with their service_id and replica_id);
#   4. asks for one replica more than the flavor has free GPUs and shows it waiting
#      ("waiting for capacity: N of N+1 replicas placed").
# Usage: bash bench/gpu_check.sh   (from the repository, after `make serve` set up .venv)
# Without a GPU, MOORAGE_FLAVORS=<a file declaring GPUs> runs the same steps on
# declared GPUs (the UUIDs printed are then the declared ones).
set -euo pipefail
cd "$(dirname "$0")/.."
MOORAGE=${MOORAGE:-.venv/bin/moorage}
PYTHON=${PYTHON:-.venv/bin/python}
PORT=${PORT:-18480}
BASE="http://127.0.0.1:$PORT"
HOME_DIR=$(mktemp -d /tmp/moorage-gpu-check.XXXXXX)
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -INT "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$HOME_DIR"
}
trap cleanup EXIT

nvidia-smi -L || echo "(nvidia-smi not found; moorage asks NVML directly)"

MOORAGE_HOME="$HOME_DIR" MOORAGE_PORT="$PORT" MOORAGE_RUNTIME=process \
    MOORAGE_GPU_METRICS_INTERVAL_S=1 \
    "$MOORAGE" serve >"$HOME_DIR/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 60); do
    [[ -s "$HOME_DIR/admin-token" ]] && curl -sf "$BASE/healthz" >/dev/null && break
    sleep 1
done
TOKEN=$(cat "$HOME_DIR/admin-token")
USER_TOKEN=$(MOORAGE_HOME="$HOME_DIR" "$MOORAGE" tokens create --user gpu-check)

# Everything else in one small Python program: JSON in, plain lines out, deadlines.
"$PYTHON" - "$BASE" "$TOKEN" "$USER_TOKEN" "$MOORAGE" "$HOME_DIR" <<'PY'
import json, os, subprocess, sys, time, urllib.error, urllib.request

base, token, user_token, moorage, home = sys.argv[1:]

def call(method, path, body=None, as_token=None):
    """As the normal user unless told: the endpoints are theirs, their replicas
    sandboxed. An error answer ends the check with the server's message."""
    request = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {as_token or user_token}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        sys.exit(f"{method} {path}: {error.code} {error.read().decode()[:500]}")

# The check takes every GPU of one flavor: the admin lifts the user's share of it.
users = call("GET", "/v1/users", as_token=token)["user_list"]
user_id = next(u["user_id"] for u in users if u["name"] == "gpu-check")
call("PUT", f"/v1/users/{user_id}/quota", {"flavor_share": 1}, as_token=token)

def gpu_gauges(service_id):
    """The moorage_gpu_* lines of /metrics for the endpoint's replicas."""
    request = urllib.request.Request(base + "/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return [line for line in text.splitlines()
            if line.startswith("moorage_gpu_") and f'service_id="{service_id}"' in line]

def flavors():
    return call("GET", "/v1/inference-service/flavor")["flavor_list"]

print("== flavors discovered")
for f in flavors():
    print(f"{f['display_name']:32} id={f['flavor_id']} node_max_gpu={f['node_max_gpu']} "
          f"vram={f.get('meta_info', {}).get('vram')} cuda={f.get('meta_info', {}).get('cuda')} "
          f"available_num={f['available_num']}")
gpu = next((f for f in flavors() if f["node_max_gpu"] > 0), None)
if gpu is None:
    sys.exit("no GPU flavor: NVML found no GPU on this host (see the serve log)")

def create(name, count, as_token=None):
    return call("POST", "/v1/inference-service", {
        "name": name, "description": "gpu check", "payment_type": "usd",
        "resource_metadata": {"flavor_id": gpu["flavor_id"], "scale_type": "manual",
                              "target_instance_number": count},
        "deploy_metadata": {"image_url": "none", "port": 8080, "gpu_num": 1,
                            "command": 'echo "sees GPU $CUDA_VISIBLE_DEVICES, devices '
                                       '$(ls /dev | grep nvidia | tr "\\n" " ")"; '
                                       "nvidia-smi -L 2>&1 | sed 's/^/sees GPU (nvidia-smi) /'; "
                                       "exec python3 -m http.server $PORT"},
    }, as_token=as_token)["service_id"]

def wait(service_id, until, what, limit_s=90, as_token=None):
    deadline = time.monotonic() + limit_s
    while True:
        endpoint = call("GET", f"/v1/inference-service/{service_id}", as_token=as_token)
        if until(endpoint):
            return endpoint
        if time.monotonic() > deadline:
            sys.exit(f"never {what}: {endpoint.get('status')} {endpoint.get('status_info')}")
        time.sleep(1)

print(f"== two replicas with gpu_num 1 on {gpu['display_name']}")
two = create("gpu-check-two", 2 if gpu["available_num"] >= 2 else 1)
wait(two, lambda e: e["status"] == "available", "available")
logs = subprocess.run([moorage, "logs", two], capture_output=True, text=True, timeout=30,
                      env={**os.environ, "MOORAGE_HOME": home, "MOORAGE_URL": base,
                           "MOORAGE_TOKEN": user_token})
for line in logs.stdout.splitlines():
    if "sees GPU" in line:
        print(line)

print("== their GPUs on /metrics")
deadline = time.monotonic() + 30  # readings every second, allocations cached 5 s
while not any(line.startswith("moorage_gpu_utilization_ratio") for line in gpu_gauges(two)):
    if time.monotonic() > deadline:
        break
    time.sleep(1)
gauges = gpu_gauges(two)
for line in gauges:
    print(line)
if not any(line.startswith("moorage_gpu_utilization_ratio") for line in gauges):
    print("(no NVML readings for these GPUs: declared ones, or NVML failed; see the serve log)")

free = next(f for f in flavors() if f["flavor_id"] == gpu["flavor_id"])["available_num"]
print(f"== available_num is now {free}; the admin asks for {free + 1} more replicas")
# As the admin, whom no quota bounds: the user may not ask past the flavor's GPUs.
more = create("gpu-check-waiting", free + 1, as_token=token)
endpoint = wait(more, lambda e: (e.get("status_info") or "").startswith("waiting for capacity"),
                "waiting for capacity", as_token=token)
print(f"status={endpoint['status']} status_info={endpoint['status_info']}")
call("DELETE", f"/v1/inference-service/{more}", as_token=token)
call("DELETE", f"/v1/inference-service/{two}")
print("== done")
PY
