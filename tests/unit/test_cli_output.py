"""What the CLI prints, without a server: the status line while waiting, the plain
lines when no terminal watches, the failure text, ``-o json|yaml``, the bodies built
from flags and the endpoint files read."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from moorage.api.schemas import Endpoint
from moorage.cli.bodies import create_body, parse_env, update_body
from moorage.cli.files import parse_body
from moorage.cli.output import as_json, as_yaml
from moorage.cli.progress import Reporter, elapsed_text, failure_text, status_line
from moorage.models.requests import CreateEndpointRequest
from tests.support.endpoint_objects import endpoint_object


def endpoint(
    status: str = "initializing",
    info: str | None = None,
    wanted: int = 2,
    ready: int = 0,
    failure: str | None = None,
) -> Endpoint:
    replicas = [
        ("ready", 1, None) if n < ready else ("starting", 1, failure) for n in range(wanted)
    ]
    return endpoint_object(
        status=status, info=info, wanted=wanted, replicas=replicas, price_per_hour=0.1
    )


# -- the status line ------------------------------------------------------------------


def test_elapsed_is_short() -> None:
    assert [elapsed_text(s) for s in (0, 7.9, 59, 60, 125, 3599, 3720)] == [
        "0s",
        "7s",
        "59s",
        "1m00s",
        "2m05s",
        "59m59s",
        "1h02m",
    ]


def test_the_status_line_says_phase_replicas_what_it_waits_for_and_time() -> None:
    line = status_line(endpoint("initializing", "pulling image: 45%", wanted=2), 12)
    assert line == "web: initializing, 0/2 ready, pulling image: 45% (12s)"
    assert status_line(endpoint("available", wanted=2, ready=2), 75) == (
        "web: available, 2/2 ready (1m15s)"
    )


def test_without_a_terminal_one_line_per_change_of_phase() -> None:
    stream = io.StringIO()
    now = [0.0]
    reporter = Reporter(live=False, stream=stream, clock=lambda: now[0])
    for seconds, seen in [
        (0, endpoint("initializing", "pulling image: 10%")),
        (1, endpoint("initializing", "pulling image: 45%")),  # same phase: no line
        (2, endpoint("initializing", "starting", ready=1)),
        (3, endpoint("available", ready=2)),
        (4, endpoint("available", ready=2)),
    ]:
        now[0] = seconds
        reporter(seen)
    assert stream.getvalue().splitlines() == [
        "web: initializing, 0/2 ready, pulling image: 10% (0s)",
        "web: initializing, 1/2 ready, starting (2s)",
        "web: available, 2/2 ready (3s)",
    ]


def test_on_a_terminal_one_live_line_is_redrawn_not_printed_per_change() -> None:
    stream = io.StringIO()
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    reporter = Reporter(live=True, stream=stream, clock=lambda: 3.0)
    reporter(endpoint("initializing"))  # before the line shows: not printed either
    with reporter.showing(console):
        reporter(endpoint("available", ready=1))
        reporter(endpoint("initializing", "[bold]pulling[/bold]"))
    assert stream.getvalue() == ""
    assert reporter.text == "web 0s: initializing, 0/2 ready: [bold]pulling[/bold]"
    assert "[bold]pulling[/bold]" in screen.getvalue()  # the server's text, not markup


def test_a_failure_adds_the_replicas_last_failure_when_the_message_lacks_it() -> None:
    failing = endpoint("unavailable", "1 of 2 cannot run", ready=1, failure="exited with code 3")
    text = failure_text(failing, "endpoint web (s1) cannot run: 1 of 2 cannot run")
    assert text == (
        "endpoint web (s1) cannot run: 1 of 2 cannot run; replica 11111111: exited with code 3"
    )
    said = "endpoint web (s1) cannot run: last: exited with code 3"
    assert failure_text(failing, said) == said


# -- -o json / yaml ------------------------------------------------------------------


def test_json_is_the_apis_and_yaml_the_same_data() -> None:
    shown = endpoint("available", wanted=1, ready=1)
    as_api = shown.model_dump(mode="json")
    assert json.loads(as_json(shown)) == as_api
    assert yaml.safe_load(as_yaml(shown)) == as_api
    assert json.loads(as_json([shown])) == [as_api]


# -- bodies from flags, files --------------------------------------------------------


def test_env_flags_are_name_value_pairs() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("NOVALUE", "=1"):
        with pytest.raises(ValueError, match="--env: expected NAME=VALUE"):
            parse_env([bad])


def test_a_create_body_from_flags_has_the_references_shape() -> None:
    body = create_body(
        name="web",
        image="python:3.10-slim",
        command="python3 app.py",
        port=8080,
        flavor_id="f1",
        replicas=2,
        gpus=0,
        env=["A=1"],
        payment_type=None,
        description=None,
    )
    assert body == {
        "name": "web",
        "resource_metadata": {
            "flavor_id": "f1",
            "scale_type": "manual",
            "target_instance_number": 2,
        },
        "deploy_metadata": {
            "image_url": "python:3.10-slim",
            "port": 8080,
            "gpu_num": 0,
            "command": "python3 app.py",
            "env": {"A": "1"},
        },
    }


def test_an_update_body_holds_only_what_was_given() -> None:
    assert update_body() == {}
    assert update_body(replicas=3) == {"resource_metadata": {"target_instance_number": 3}}
    assert update_body(image="x:1", env=["A=2"]) == {
        "deploy_metadata": {"image_url": "x:1", "env": {"A": "2"}}
    }


def test_an_endpoint_file_is_yaml_or_json_holding_one_mapping() -> None:
    as_yaml_text = "name: web\nresource_metadata:\n  target_instance_number: 2\n"
    as_json_text = '{"name": "web", "resource_metadata": {"target_instance_number": 2}}'
    expected: dict[str, Any] = {"name": "web", "resource_metadata": {"target_instance_number": 2}}
    assert parse_body(as_yaml_text, "a.yaml") == expected
    assert parse_body(as_json_text, "a.json") == expected
    with pytest.raises(ValueError, match=r"a\.yaml must hold one mapping"):
        parse_body("- name: web\n", "a.yaml")
    with pytest.raises(ValueError, match=r"a\.yaml is neither YAML nor JSON"):
        parse_body("name: [web\n", "a.yaml")


def test_the_example_endpoint_file_is_a_valid_create_body() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "endpoint.yaml"
    body = parse_body(example.read_text(), str(example))
    CreateEndpointRequest.model_validate(body)
    assert body["resource_metadata"]["flavor_id"] == "CPU"  # a name: apply maps it to the id
