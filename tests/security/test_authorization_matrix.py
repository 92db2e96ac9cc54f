"""Every route x every kind of caller, against a real ``moorage serve``: who gets what.

The routes come from the app itself (its OpenAPI document, which FastAPI builds
from the route list) plus the gateway's inference path and the document's own
pages, so a route added without a row here fails the test. Each cell is one
request; its expected status is the row's rule for that caller. And nothing
leaks: no answer to anyone but the owner carries the owner's endpoint id, name,
environment value or command.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.support.server import (
    FLASK_COMMAND,
    ApiClient,
    MoorageServer,
    endpoint_body,
    wait_for,
)

KINDS = ("none", "malformed", "wrong", "revoked", "other", "own", "admin")
INFERENCE = "/inference-api/v1/inference_service/{service_id}/{path}"
# FastAPI's own pages, served to anyone: the document is public, like the reference's.
# So are the dashboard's static files (it shows nothing until its user gives a token).
DOCUMENT_PAGES = ("/openapi.json", "/docs", "/redoc", "/ui", "/ui/app.js")
SECRET_NAME = "MATRIX_TOKEN"
REGISTRY = "registry.matrix.example"
BUDGET_CURRENCY = "cny"

# Who may call a route, as the expected status per caller kind.
NO_TOKEN = {"none": 401, "malformed": 401, "wrong": 401, "revoked": 401}
PUBLIC = dict.fromkeys(KINDS, 200)
ANY_USER = {**NO_TOKEN, "other": 200, "own": 200, "admin": 200}
OWNER_ONLY = {**NO_TOKEN, "other": 404, "own": 200, "admin": 404}
ADMIN_ONLY = {**NO_TOKEN, "other": 403, "own": 403, "admin": 200}
SELF_OR_ADMIN = {**NO_TOKEN, "other": 403, "own": 200, "admin": 200}


@dataclass(frozen=True)
class Row:
    """A route's rule, and how to call it: ``body`` and the path's ids per caller."""

    expected: dict[str, int]
    body: Callable[[Context, str], Any] | None = None
    # "fresh": the owner's call gets an endpoint of its own (it deletes it).
    target: str = "shared"
    # The query string per caller.
    params: Callable[[Context, str], dict[str, str]] | None = None
    # The admin may read what this route shows of every user (their usage).
    admin_reads_all: bool = False


@dataclass
class Context:
    server: MoorageServer
    admin: ApiClient
    alice: ApiClient
    bob: ApiClient
    alice_id: str
    service_id: str
    secrets: tuple[str, ...]
    revoked: str
    token_id: str
    created: list[tuple[ApiClient, str]]


def _create_body(ctx: Context, kind: str) -> dict[str, Any]:
    return endpoint_body(
        ctx.alice.flavor_id(),
        name=f"matrix-{kind}-{secrets.token_hex(4)}",
        deploy_metadata={"command": f"sleep 600 # {kind}"},
    )


ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(PUBLIC),
    ("GET", "/metrics"): Row(ADMIN_ONLY),
    ("GET", "/v1/inference-service/flavor"): Row(ANY_USER),
    ("GET", "/v1/inference-service"): Row(ANY_USER),
    ("POST", "/v1/inference-service"): Row(ANY_USER, body=_create_body),
    ("GET", "/v1/inference-service/{service_id}"): Row(OWNER_ONLY),
    ("PUT", "/v1/inference-service/{service_id}"): Row(
        OWNER_ONLY, body=lambda _ctx, kind: {"description": f"changed by {kind}"}
    ),
    ("DELETE", "/v1/inference-service/{service_id}"): Row(OWNER_ONLY, target="fresh"),
    ("POST", "/v1/inference-service/{service_id}/stop"): Row(OWNER_ONLY, target="fresh"),
    ("POST", "/v1/inference-service/{service_id}/start"): Row(OWNER_ONLY),
    ("GET", "/v1/inference-service/{service_id}/logs"): Row(OWNER_ONLY),
    ("GET", "/v1/inference-service/{service_id}/events"): Row(OWNER_ONLY),
    ("GET", "/v1/inference-service/{service_id}/traffic"): Row(OWNER_ONLY),
    ("GET", "/v1/users"): Row(ADMIN_ONLY),
    ("POST", "/v1/users"): Row(
        {**ADMIN_ONLY, "admin": 201},
        body=lambda _ctx, kind: {"name": f"matrix-{kind}-{secrets.token_hex(4)}"},
    ),
    ("GET", "/v1/tokens"): Row(ADMIN_ONLY),
    ("POST", "/v1/tokens"): Row(
        {**ADMIN_ONLY, "admin": 201},
        body=lambda ctx, _kind: {"user_id": ctx.alice_id, "name": "matrix"},
    ),
    ("DELETE", "/v1/tokens/{token_id}"): Row(ADMIN_ONLY),
    ("GET", "/v1/gateway/routes"): Row(ADMIN_ONLY),
    # A gateway's demand report names no endpoint here: nothing is scaled by it.
    ("POST", "/v1/gateway/demand"): Row(
        ADMIN_ONLY, body=lambda _ctx, kind: {"gateway": f"matrix-{kind}", "endpoints": {}}
    ),
    ("GET", "/v1/quota"): Row(ANY_USER),
    ("GET", "/v1/users/{user_id}/quota"): Row(SELF_OR_ADMIN),
    ("PUT", "/v1/users/{user_id}/quota"): Row(ADMIN_ONLY, body=lambda _ctx, _kind: {}),
    # Spending limits: the admin sets and removes them (alice's cny one, set by the
    # fixture, far above anything spent); anyone reads their own.
    ("GET", "/v1/budgets"): Row(ANY_USER),
    ("GET", "/v1/users/{user_id}/budgets"): Row(ADMIN_ONLY),
    ("PUT", "/v1/users/{user_id}/budgets/{currency}"): Row(
        ADMIN_ONLY, body=lambda _ctx, _kind: {"limit": "1000000"}
    ),
    ("DELETE", "/v1/users/{user_id}/budgets/{currency}"): Row(ADMIN_ONLY),
    # Secrets and registry logins are per user: a PUT stores the caller's own, a DELETE
    # finds only the caller's own (alice's, by this name; nobody else has one).
    ("GET", "/v1/secrets"): Row(ANY_USER),
    ("PUT", "/v1/secrets/{name}"): Row(
        ANY_USER, body=lambda _ctx, kind: {"value": f"replaced by {kind}"}
    ),
    ("DELETE", "/v1/secrets/{name}"): Row(OWNER_ONLY),
    ("GET", "/v1/registry-credentials"): Row(ANY_USER),
    ("PUT", "/v1/registry-credentials/{registry}"): Row(
        ANY_USER, body=lambda _ctx, kind: {"username": kind, "password": f"pw-{kind}"}
    ),
    ("DELETE", "/v1/registry-credentials/{registry}"): Row(OWNER_ONLY),
    # Usage: anyone reads their own; naming alice's user_id takes her or the admin.
    ("GET", "/v1/usage"): Row(
        SELF_OR_ADMIN,
        params=lambda ctx, _kind: {"user_id": ctx.alice_id},
        admin_reads_all=True,
    ),
    ("GET", INFERENCE): Row(OWNER_ONLY),
    ("POST", INFERENCE): Row(OWNER_ONLY, body=lambda _ctx, kind: {"from": kind}),
    **{("GET", page): Row(PUBLIC) for page in DOCUMENT_PAGES},
}


def _headers(ctx: Context, kind: str) -> dict[str, str]:
    return {
        "none": {},
        # A valid token, under the wrong scheme: still no token.
        "malformed": {"Authorization": f"Token {ctx.alice.token}"},
        "wrong": {"Authorization": f"Bearer mrg_{secrets.token_urlsafe(32)}"},
        "revoked": {"Authorization": f"Bearer {ctx.revoked}"},
        "other": ctx.bob.headers,
        "own": ctx.alice.headers,
        "admin": ctx.admin.headers,
    }[kind]


def _app_routes(server: MoorageServer) -> set[tuple[str, str]]:
    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    routes = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    return (
        routes
        | {("GET", INFERENCE), ("POST", INFERENCE)}
        | {("GET", page) for page in DOCUMENT_PAGES}
    )


@pytest.fixture(scope="module")
def ctx(
    server: MoorageServer, admin: ApiClient, alice: ApiClient, bob: ApiClient
) -> Iterator[Context]:
    marker = secrets.token_hex(8)
    owned = alice.create(
        name=f"alice-secret-{marker}",
        deploy_metadata={
            "command": f"export MARK={marker} && {FLASK_COMMAND}",
            "env": {"ALICE_SECRET": f"env-{marker}"},
        },
    )
    stored = alice.call("PUT", f"/v1/secrets/{SECRET_NAME}", json={"value": f"sv-{marker}"})
    assert stored.status_code == 200, stored.text
    login = {"username": f"user-{marker}", "password": f"pw-{marker}"}
    stored = alice.call("PUT", f"/v1/registry-credentials/{REGISTRY}", json=login)
    assert stored.status_code == 200, stored.text
    budget = f"/v1/users/{owned['user_id']}/budgets/{BUDGET_CURRENCY}"
    stored = admin.call("PUT", budget, json={"limit": "1000000"})
    assert stored.status_code == 200, stored.text
    revoked = admin.call("POST", "/v1/tokens", json={"user_id": owned["user_id"]}).json()
    assert admin.call("DELETE", f"/v1/tokens/{revoked['token_id']}").status_code == 200
    spare = admin.call("POST", "/v1/tokens", json={"user_id": owned["user_id"]}).json()
    context = Context(
        server=server,
        admin=admin,
        alice=alice,
        bob=bob,
        alice_id=owned["user_id"],
        service_id=owned["service_id"],
        secrets=(owned["service_id"], owned["name"], f"env-{marker}", marker),
        revoked=revoked["token"],
        token_id=spare["token_id"],
        created=[],
    )
    try:
        alice.wait_status(owned["service_id"], "available", timeout=90)
        # The revoked token has left the gateway's table too.
        gateway_path = f"/inference-api/v1/inference_service/{owned['service_id']}/"
        wait_for(
            lambda: (
                requests.get(
                    server.url + gateway_path,
                    headers={"Authorization": f"Bearer {revoked['token']}"},
                    timeout=10,
                ).status_code
                == 401
            ),
            timeout=30,
            what="the revoked token to be refused by the gateway",
        )
        yield context
    finally:
        for client, service_id in [*context.created, (alice, owned["service_id"])]:
            client.call("DELETE", f"/v1/inference-service/{service_id}")


def _path(ctx: Context, template: str, kind: str, row: Row) -> str:
    service_id = ctx.service_id
    if row.target == "fresh" and kind == "own":
        fresh = ctx.alice.create(
            name=f"fresh-{secrets.token_hex(4)}", deploy_metadata={"command": "sleep 600"}
        )
        ctx.created.append((ctx.alice, fresh["service_id"]))
        service_id = fresh["service_id"]
    return (
        template.replace("{service_id}", service_id)
        .replace("{token_id}", ctx.token_id)
        .replace("{user_id}", ctx.alice_id)
        .replace("{path}", "echo")
        .replace("{name}", SECRET_NAME)
        .replace("{registry}", REGISTRY)
        .replace("{currency}", BUDGET_CURRENCY)
    )


def _call(ctx: Context, method: str, template: str, kind: str) -> requests.Response:
    row = ROWS[(method, template)]
    # The admin comes last: its DELETE /v1/tokens/{id} revokes the spare token.
    body = row.body(ctx, kind) if row.body else None
    response = requests.request(
        method,
        ctx.server.url + _path(ctx, template, kind, row),
        headers=_headers(ctx, kind),
        json=body,
        params=row.params(ctx, kind) if row.params else None,
        timeout=30,
    )
    if method == "POST" and template == "/v1/inference-service" and response.ok:
        owner = {"other": ctx.bob, "own": ctx.alice, "admin": ctx.admin}[kind]
        ctx.created.append((owner, response.json()["service_id"]))
    return response


def test_every_route_has_a_row(server: MoorageServer) -> None:
    missing = _app_routes(server) - set(ROWS)
    assert not missing, f"routes without an authorization row: {sorted(missing)}"


def test_authorization_matrix(ctx: Context) -> None:
    failures: list[str] = []
    leaks: list[str] = []
    for method, template in sorted(_app_routes(ctx.server)):
        row = ROWS[(method, template)]
        for kind in KINDS:
            response = _call(ctx, method, template, kind)
            expected = row.expected[kind]
            if response.status_code != expected:
                failures.append(
                    f"{method} {template} as {kind}: {response.status_code}, "
                    f"expected {expected}: {response.text[:200]}"
                )
            if response.status_code >= 400:
                error = response.json()
                assert set(error) == {"code", "message"}, (method, template, kind, error)
            # The admin (the trusted operator) reads the route table and metrics, which
            # name every endpoint; every other answer to a non-owner must not.
            trusted = kind == "admin" and (row.expected is ADMIN_ONLY or row.admin_reads_all)
            if kind != "own" and not trusted:
                # A 404 names the id the caller sent; that id is theirs already.
                sent = ctx.service_id if "{service_id}" in template else None
                leaks.extend(
                    f"{method} {template} as {kind} shows {secret!r}"
                    for secret in ctx.secrets
                    if secret != sent and secret in response.text
                )
    assert not failures, "\n".join(failures)
    assert not leaks, "\n".join(leaks)


def test_non_owners_changed_nothing(ctx: Context) -> None:
    """After every caller had a go at alice's endpoint, it is as she left it: only her
    own PUT changed it, and it still serves her (and only her)."""
    endpoint = ctx.alice.get(ctx.service_id)
    assert endpoint["is_deleted"] is False
    assert endpoint["description"] in ("test", "changed by own")
    response = ctx.alice.gateway(ctx.service_id)
    assert response.status_code == 200, response.text
    assert ctx.bob.gateway(ctx.service_id).status_code == 404
    tokens = ctx.admin.call("GET", "/v1/tokens").json()["token_list"]
    assert next(t for t in tokens if t["token_id"] == ctx.token_id)["is_revoked"] is True
