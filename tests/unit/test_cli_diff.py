"""What ``moorage apply`` would change (``cli/diff.py``): only the fields an endpoint
file sets, compared with the endpoint as GET shows it, and the PUT that makes them."""

from __future__ import annotations

from typing import Any

from moorage.cli.diff import Change, changes, patch


def current() -> dict[str, Any]:
    """The parts of a GET answer the comparisons look at."""
    return {
        "service_id": "s1",
        "name": "web",
        "description": "",
        "payment_type": "usd",
        "status": "available",
        "resource_metadata": {
            "flavor_id": "f1",
            "scale_type": "manual",
            "target_instance_number": 1,
            "scale_policy": None,
        },
        "deploy_metadata": {
            "image_url": "python:3.10-slim",
            "command": "python3 -m http.server --bind 127.0.0.1 $PORT",
            "port": 8080,
            "gpu_num": 0,
            "env": {"A": "1", "B": "2"},
            "readiness_probe": {
                "path": "/",
                "initial_delay_s": 0.0,
                "period_s": 1.0,
                "timeout_s": 2.0,
                "failure_threshold": 3,
            },
            "args": [],
            "revision": 1,
        },
        "gateway_metadata": {"policy": "least_busy", "max_queue": 100},
    }


def desired(**deploy: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "resource_metadata": {"flavor_id": "f1", "target_instance_number": 1},
        "deploy_metadata": {
            "image_url": "python:3.10-slim",
            "command": "python3 -m http.server --bind 127.0.0.1 $PORT",
            "port": 8080,
            **deploy,
        },
    }


def test_the_same_file_again_changes_nothing() -> None:
    assert changes(desired(), current()) == []


def test_fields_the_file_leaves_out_keep_what_the_endpoint_has() -> None:
    # No description, gateway_metadata, env or gpu_num in the file: nothing to change.
    only_name = {"name": "web", "resource_metadata": {"target_instance_number": 1}}
    assert changes(only_name, current()) == []


def test_a_new_replica_count_is_one_change_with_old_and_new() -> None:
    file = desired()
    file["resource_metadata"]["target_instance_number"] = 2
    found = changes(file, current())
    assert found == [Change(("resource_metadata", "target_instance_number"), 1, 2)]
    assert found[0].describe() == "resource_metadata.target_instance_number: 1 -> 2"
    assert patch(file, found) == {"resource_metadata": {"target_instance_number": 2}}


def test_numbers_written_as_strings_are_the_numbers_the_server_stores() -> None:
    file = desired(port="8080")
    file["resource_metadata"]["target_instance_number"] = "1"
    assert changes(file, current()) == []
    file["resource_metadata"]["target_instance_number"] = "3"
    assert [c.field for c in changes(file, current())] == [
        "resource_metadata.target_instance_number"
    ]


def test_env_is_compared_whole_a_key_left_out_is_removed() -> None:
    file = desired(env={"A": "1"})
    found = changes(file, current())
    assert found == [Change(("deploy_metadata", "env"), {"A": "1", "B": "2"}, {"A": "1"})]
    assert found[0].describe() == 'deploy_metadata.env: {"A": "1", "B": "2"} -> {"A": "1"}'
    assert patch(file, found) == {"deploy_metadata": {"env": {"A": "1"}}}


def test_a_probe_is_compared_by_the_keys_set_and_sent_whole() -> None:
    assert changes(desired(readiness_probe={"path": "/"}), current()) == []
    file = desired(readiness_probe={"path": "/health", "period_s": 2})
    found = changes(file, current())
    assert [c.field for c in found] == [
        "deploy_metadata.readiness_probe.path",
        "deploy_metadata.readiness_probe.period_s",
    ]
    # A PUT replaces the probe as a whole: the file's whole probe, once.
    assert patch(file, found) == {
        "deploy_metadata": {"readiness_probe": {"path": "/health", "period_s": 2}}
    }


def test_several_changes_make_one_body_and_null_removes_a_command() -> None:
    file = desired(image_url="python:3.12-slim", command=None)
    file["description"] = "now described"
    found = changes(file, current())
    assert {c.field for c in found} == {
        "deploy_metadata.image_url",
        "deploy_metadata.command",
        "description",
    }
    assert patch(file, found) == {
        "description": "now described",
        "deploy_metadata": {"image_url": "python:3.12-slim", "command": None},
    }
    command = next(c for c in found if c.field == "deploy_metadata.command")
    assert command.describe().endswith("-> null")


def test_a_field_the_endpoint_does_not_have_shows_as_not_set() -> None:
    # The server names an unknown field when the PUT is sent; the diff shows it.
    file = {"name": "web", "deploy_metadata": {"replicas": 2}}
    (found,) = changes(file, current())
    assert found.describe() == "deploy_metadata.replicas: (not set) -> 2"


def test_the_name_finds_the_endpoint_and_is_never_a_change() -> None:
    assert changes({"name": "another"}, current()) == []
