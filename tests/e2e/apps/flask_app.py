"""A small Flask app like the reference's example: it listens on $PORT and says
which replica answered, so tests can see load spread over replicas."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

app = Flask(__name__)
REPLICA = os.environ.get("MOORAGE_REPLICA_ID", "")


@app.route("/")
def index() -> Response:
    return jsonify(message="hello from moorage", replica=REPLICA, pid=os.getpid())


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


@app.route("/slow")
def slow() -> Response:
    time.sleep(float(request.args.get("seconds", "0.5")))
    return jsonify(replica=REPLICA)


@app.route("/stream")
def stream() -> Response:
    count = int(request.args.get("count", "3"))
    gap = float(request.args.get("gap", "0.4"))

    def events() -> Iterator[str]:
        for index in range(count):
            yield f"data: {index}\n\n"
            time.sleep(gap)

    return Response(events(), mimetype="text/event-stream")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
