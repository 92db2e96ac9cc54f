"""A normal user's replica on a Ray node is as shut in as on moorage's own host: it
cannot reach the cluster (Ray has no authentication: a replica that reached the GCS
or a raylet could run code on every node), nor see Ray's files, nor other replicas'
folders on its node, nor any setting of moorage's or Ray's."""

from __future__ import annotations

import json

from tests.support.server import ApiClient, MoorageServer, inline_app_command

STORES = ["sqlite"]  # what is checked is the sandbox on the node, beside the store
RUNTIMES = ["ray"]

PROBE_APP = r"""
import glob, json, os, socket
from http.server import BaseHTTPRequestHandler, HTTPServer

def reach(address):
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        found = {
            "gcs": reach(os.environ["GCS"]),
            "ray_files": glob.glob("/tmp/ray/*"),
            "replicas": sorted(os.listdir(os.environ["REPLICAS"]))
            if os.path.isdir(os.environ["REPLICAS"]) else [],
            "settings": sorted(k for k in os.environ if k.startswith(("MOORAGE_", "RAY_"))
                               and k not in ("MOORAGE_REPLICA_ID", "MOORAGE_ENDPOINT_ID")),
        }
        body = json.dumps(found).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_replica_on_a_ray_node_cannot_reach_the_cluster_nor_its_files(
    alice: ApiClient, server: MoorageServer
) -> None:
    server_env = server.env()
    replicas_dir = f"{server_env['MOORAGE_HOME']}/ray-replicas"
    created = alice.create(
        name="prober",
        deploy_metadata={
            "command": inline_app_command(PROBE_APP),
            "env": {"GCS": server_env["MOORAGE_RAY_ADDRESS"], "REPLICAS": replicas_dir},
        },
    )
    service_id = created["service_id"]
    alice.wait_status(service_id, "available", timeout=90)
    answer = alice.gateway(service_id)
    assert answer.status_code == 200, answer.text
    found = json.loads(answer.text)
    assert found["gcs"] != "connected", found
    assert found["ray_files"] == [], found
    assert found["settings"] == [], found
    # Its own folder alone, if any: no other replica's.
    assert len(found["replicas"]) <= 1, found
