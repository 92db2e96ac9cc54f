"""The OpenAPI document is the contract: schemathesis against a real ``moorage serve``.

schemathesis (its CLI, as a user would run it) generates requests from
``/openapi.json`` with a user token and with the admin token and checks every
answer: no server error, only documented status codes, bodies and content types
as documented. Stateful and destructive calls are fine: the server is this
module's own, on a throwaway home. ``--max-examples`` keeps both runs to about a
minute each on two cores; with the suite's other files running beside it (workers)
a run may take several, so it gets ``RUN_WITHIN_S``. Beside it: the document itself
(response models, error bodies, bounds as JSON Schema keywords) and the error
messages' size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import TypeAdapter

from moorage.api import schemas
from tests.conftest import database
from tests.support.server import ApiClient, MoorageServer, endpoint_body, new_user_token

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
REFERENCE_PAGE = REFERENCE / "netmind-dedicated-endpoints-api.txt"
MAX_EXAMPLES = os.environ.get("MOORAGE_TEST_SCHEMATHESIS_EXAMPLES", "10")
# The deadline on one schemathesis run: it is CPU-bound and shares the machine.
RUN_WITHIN_S = 540
# What "the document is the contract" means here. Left out: positive_data_acceptance
# and negative_data_rejection (a valid shape may still be refused by state: unknown
# flavor, capacity, quotas), and allow_header_conformance (PUT on
# /v1/inference-service/flavor reaches the {service_id} route, so Allow rightly lists it).
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
# A long-poll that waits and a log that follows would hold a request for its whole
# timeout; every other parameter is generated.
CONFIG = """
[parameters]
"query.wait" = 0
"query.follow" = false
"""


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoorageServer]:
    home = tmp_path_factory.mktemp("contract")
    # Generated commands run on this host: package managers fail as offline ones would.
    shims = home / "shims"
    shims.mkdir()
    for tool in ("pip", "apt", "apt-get", "curl", "wget"):
        (shims / tool).write_text(f"#!/bin/sh\necho '{tool}: no network here' >&2\nexit 1\n")
        (shims / tool).chmod(0o755)
    env = {"PATH": f"{shims}:{os.environ['PATH']}"}
    with database("sqlite", home) as url:
        server = MoorageServer(home=home, database_url=url, extra_env=env).start()
        try:
            yield server
        finally:
            server.stop()


def _schemathesis(server: MoorageServer, token: str, workdir: Path) -> tuple[int, str, float]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        "20261202",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--max-failures",
        "20",
        # How fast Hypothesis generates a body depends on the machine's load (the suite's
        # other files run beside this one), not on the API: not a finding.
        "--suppress-health-check",
        "too_slow",
    ]
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_WITHIN_S,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.mark.timeout(RUN_WITHIN_S + 60)
@pytest.mark.parametrize("kind", ["user", "admin"])
def test_schemathesis_finds_nothing(
    contract_server: MoorageServer, kind: str, tmp_path: Path
) -> None:
    assert contract_server.admin_token is not None
    admin = ApiClient(contract_server.url, contract_server.admin_token)
    token = new_user_token(admin, f"fuzz-{time.monotonic_ns()}") if kind == "user" else admin.token
    code, output, took = _schemathesis(contract_server, token, tmp_path)
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    print(f"schemathesis ({kind} token) took {took:.0f} s:\n{summary}")
    assert code == 0, f"schemathesis with the {kind} token found problems:\n{output[-20000:]}"
    # The server still answers everyone after the run.
    assert requests.get(contract_server.url + "/healthz", timeout=10).status_code == 200
    assert admin.call("GET", "/v1/inference-service/flavor").status_code == 200


# -- the document itself ----------------------------------------------------------------


@pytest.fixture(scope="module")
def document(contract_server: MoorageServer) -> dict[str, Any]:
    response = requests.get(contract_server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_every_route_documents_its_answers(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        success = [s for s in responses if s.startswith("2")]
        assert success, f"{method} {path}: no success response"
        for status in success:
            content = responses[status]["content"]
            assert content, f"{method} {path} {status}: no body documented"
            if "application/json" in content:
                ref = content["application/json"]["schema"].get("$ref", "")
                assert ref.startswith("#/components/schemas/"), f"{method} {path}: no model"
        errors = [s for s in responses if s[0] in "45"]
        if path != "/healthz":
            assert "401" in errors, f"{method} {path}: the token check's 401 is undocumented"
        for status in errors:
            assert responses[status]["content"] == {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
            }, f"{method} {path} {status}"
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(errors), f"{method} {path}: body errors"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_bounds_are_json_schema_keywords(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    for node in _walk(document):
        assert not {"ge", "le", "gt", "lt"} & set(node), node
    port = components["DeployMetadataIn"]["properties"]["port"]
    number, text = port["anyOf"]
    assert number == {"type": "integer", "minimum": 1, "maximum": 65535}
    pattern = re.compile(text["pattern"])
    assert pattern.match("8080")
    assert pattern.match("65535")
    assert not pattern.match("0")
    assert not pattern.match("65536")
    assert not pattern.match("8o")
    # The reference's own PUT body is valid by the document.
    target = components["ResourceMetadataPatch"]["properties"]["target_instance_number"]
    strings = [b for b in _walk(target) if b.get("type") == "string"]
    assert any(re.match(b["pattern"], "2") for b in strings)


def test_reference_example_responses_fit_the_models() -> None:
    """The reference page's example answers validate against the response models; the
    parts it elides (``{...}``, ``"..."``) are left out of the check."""
    if not REFERENCE_PAGE.exists():
        pytest.skip(f"no reference page at {REFERENCE_PAGE}")
    text = REFERENCE_PAGE.read_text()
    examples = re.findall(r"Example Response:\s*\n\s*(\{.*?\n\})", text, flags=re.S)
    assert len(examples) >= 4
    schemas.FlavorList.model_validate_json(examples[0])
    fields = schemas.Endpoint.model_fields
    for example in examples[1:]:
        elided = re.sub(r"\{\s*\.\.\.\s*\}", '"<elided>"', example)
        service = json.loads(elided)
        assert set(service) <= set(fields)
        for name, value in service.items():
            if value in ("<elided>", "..."):
                continue
            annotation = fields[name].annotation
            assert annotation is not None
            TypeAdapter(annotation).validate_python(value)


# -- error messages never grow with the input ----------------------------------------------


def test_a_huge_value_is_not_echoed_back(contract_server: MoorageServer, tmp_path: Path) -> None:
    assert contract_server.admin_token is not None
    admin = ApiClient(contract_server.url, contract_server.admin_token)
    alice = ApiClient(contract_server.url, new_user_token(admin, f"echo-{time.monotonic_ns()}"))
    flavor = alice.flavor_id()
    huge = "x" * 300_000
    cases = [
        endpoint_body(flavor, name=huge),
        endpoint_body(flavor, deploy_metadata={"port": huge}),
        endpoint_body(flavor, payment_type=huge),
        {**endpoint_body(flavor), huge: 1},
        endpoint_body(flavor, deploy_metadata={"env": {f"K{i}": i for i in range(500)}}),
    ]
    for body in cases:
        response = alice.call("POST", "/v1/inference-service", json=body)
        assert response.status_code in (413, 422), response.text[:300]
        assert len(response.content) < 4096, len(response.content)
        error = response.json()
        assert set(error) == {"code", "message"}
        assert "x" * 100 not in error["message"]
    # Other users are served meanwhile, and the caller too.
    assert admin.call("GET", "/v1/inference-service/flavor").status_code == 200
    assert alice.call("GET", "/v1/inference-service").status_code == 200


# -- what schemathesis found --------------------------------------------------------------


@pytest.mark.parametrize("page", ["683269235945914761216", "9223372036854775807"])
def test_a_page_past_the_stores_integers_is_refused(
    contract_server: MoorageServer, page: str
) -> None:
    """It was a 500 (the offset overflowed SQLite's integers); now a 400 naming the
    parameter, and the listing still works for everyone."""
    assert contract_server.admin_token is not None
    admin = ApiClient(contract_server.url, contract_server.admin_token)
    response = admin.call("GET", "/v1/inference-service", params={"page": page})
    assert response.status_code == 400, response.text
    assert "page" in response.json()["message"]
    assert admin.call("GET", "/v1/inference-service").status_code == 200
