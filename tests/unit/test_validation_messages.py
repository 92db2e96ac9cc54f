"""Validation messages quote the rejected value once, and a refused ``mount_path``
suggests one that every runtime can mount."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.api.errors import describe_validation_error
from moorage.models.requests import MOUNT_PATH_ADVICE, CreateEndpointRequest
from tests.unit.test_requests import create_body, messages_of


def _body(*volumes: dict[str, str]) -> dict[str, Any]:
    return create_body(deploy_metadata={"volumes": list(volumes)})


def _volumes(*volumes: dict[str, str]) -> list[str]:
    return messages_of(_body(*volumes))


def _accepted(*volumes: dict[str, str]) -> bool:
    CreateEndpointRequest.model_validate(_body(*volumes))
    return True


def test_a_relative_mount_path_is_quoted_once() -> None:
    (message,) = _volumes({"name": "w", "mount_path": "data"})

    assert message.startswith("deploy_metadata.volumes.0.mount_path: ")
    assert message.count("'data'") == 1, message
    assert message.endswith("got 'data'")


@pytest.mark.parametrize("mount_path", ["/", "/etc/foo", "/usr/local/x"])
def test_a_refused_mount_path_suggests_a_folder_under_mnt(mount_path: str) -> None:
    (message,) = _volumes({"name": "w", "mount_path": mount_path})

    assert MOUNT_PATH_ADVICE in message
    assert "/data" not in message
    assert message.count(repr(mount_path)) == 1, message


def test_the_advice_is_not_itself_refused() -> None:
    assert _accepted({"name": "w", "mount_path": "/mnt/weights"})


@pytest.mark.parametrize(("name", "suggested"), [("w", "/mnt/w"), ("model-cache", "/mnt/weights")])
def test_an_overlap_suggests_a_free_folder_and_does_not_repeat_the_volumes(
    name: str, suggested: str
) -> None:
    (message,) = _volumes({"name": name, "mount_path": "/mnt/model-cache/x"})

    assert f"such as {suggested})" in message, message
    assert "got" not in message, message
    assert _accepted({"name": name, "mount_path": suggested})


def test_a_variable_named_in_the_message_is_not_repeated() -> None:
    body = create_body(deploy_metadata={"env": {"NVIDIA_VISIBLE_DEVICES": "0"}})

    (message,) = messages_of(body)

    assert message.count("NVIDIA_VISIBLE_DEVICES is set by moorage alone") == 1
    assert "got" not in message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # A short value is likely a word of the message: quoted all the same.
        ({"loc": ("body", "x"), "type": "value_error", "msg": "a b", "input": "a"}, "got 'a'"),
        # A value the message does not name is quoted.
        ({"loc": ("body", "x"), "type": "int_parsing", "msg": "bad", "input": "abc"}, "got"),
    ],
)
def test_values_the_message_does_not_name_are_quoted(error: dict[str, Any], expected: str) -> None:
    assert expected in describe_validation_error(error)
