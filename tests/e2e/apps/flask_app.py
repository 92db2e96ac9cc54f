"""A small Flask app like the reference's example: it listens on $PORT and says
which replica answered, so tests can see load spread over replicas."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

app = Flask(__name__)
REPLICA = os.environ.get("MOORAGE_REPLICA_ID", "")
# Differs for every start of the app, even where pids repeat (a container's app is pid 2).
BOOT = uuid.uuid4().hex


@app.route("/")
def index() -> Response:
    return jsonify(message="hello from moorage", replica=REPLICA, boot=BOOT)


@app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def echo() -> Response:
    return jsonify(
        method=request.method,
        args=request.args.to_dict(),
        body=request.get_data(as_text=True),
        authorization=request.headers.get("Authorization"),
        forwarded_for=request.headers.get("X-Forwarded-For"),
        replica=REPLICA,
    )


HEALTHY = {"ok": True}


@app.route("/health")
def health() -> tuple[Response, int]:
    return jsonify(replica=REPLICA), 200 if HEALTHY["ok"] else 503


@app.route("/break", methods=["POST"])
def break_health() -> Response:
    HEALTHY["ok"] = False
    return jsonify(replica=REPLICA, boot=BOOT, healthy=False)


@app.route("/version")
def version() -> Response:
    return jsonify(version=os.environ.get("APP_VERSION", "1"), replica=REPLICA)


@app.route("/slow")
def slow() -> Response:
    time.sleep(float(request.args.get("seconds", "0.5")))
    return jsonify(replica=REPLICA)


@app.route("/status/<int:code>")
def status(code: int) -> tuple[Response, int]:
    """Answers with the status asked for: a replica's own errors."""
    return jsonify(replica=REPLICA, status=code), code


@app.route("/stream")
def stream() -> Response:
    count = int(request.args.get("count", "3"))
    gap = float(request.args.get("gap", "0.4"))

    def events() -> Iterator[str]:
        for index in range(count):
            yield f"data: {index}\n\n"
            time.sleep(gap)

    return Response(events(), mimetype="text/event-stream")


def _stop_slowly(signum: int, frame: object) -> None:
    """Like a server finishing its work before it exits (APP_STOP_DELAY_S seconds)."""
    time.sleep(float(os.environ["APP_STOP_DELAY_S"]))
    os._exit(0)


if __name__ == "__main__":
    if os.environ.get("APP_STOP_DELAY_S"):
        signal.signal(signal.SIGTERM, _stop_slowly)
    # All interfaces: in a container the published port reaches the app from outside.
    app.run(host="0.0.0.0", port=int(os.environ["PORT"]), threaded=True)
