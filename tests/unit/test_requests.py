"""Request bodies as the API validates them, and the messages users get back."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from moorage.api.errors import describe_validation_error
from moorage.models.requests import (
    CreateEndpointRequest,
    CreateTokenRequest,
    CreateUserRequest,
    UpdateEndpointRequest,
)


def create_body(**sections: dict[str, Any]) -> dict[str, Any]:
    """A valid create body, with any section's keys overridden (``None`` removes a key)."""
    body: dict[str, Any] = {
        "name": "llama",
        "resource_metadata": {"flavor_id": "f" * 32, "target_instance_number": 1},
        "deploy_metadata": {"image_url": "local", "command": "vllm serve", "port": 8000},
    }
    body = copy.deepcopy(body)
    for section, changes in sections.items():
        target = body if section == "top" else body[section]
        for key, value in changes.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return body


def errors_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as raised:
        CreateEndpointRequest.model_validate(body)
    return [dict(e) for e in raised.value.errors()]


def messages_of(body: dict[str, Any]) -> list[str]:
    return [describe_validation_error(e) for e in errors_of(body)]


# -- accepted ---------------------------------------------------------------------


def test_minimal_create_body_gets_the_documented_defaults() -> None:
    request = CreateEndpointRequest.model_validate(
        create_body(resource_metadata={"target_instance_number": None})
    )

    assert request.description == ""
    assert request.payment_type == "usd"
    assert request.resource_metadata.scale_type == "manual"
    assert request.resource_metadata.target_instance_number == 1
    assert request.deploy_metadata.gpu_num == 0
    assert request.deploy_metadata.env == {}


def test_numbers_sent_as_strings_are_accepted() -> None:
    request = CreateEndpointRequest.model_validate(
        create_body(
            resource_metadata={"target_instance_number": "2"},
            deploy_metadata={"port": " 8080 ", "gpu_num": "1"},
        )
    )

    assert request.resource_metadata.target_instance_number == 2
    assert request.deploy_metadata.port == 8080
    assert request.deploy_metadata.gpu_num == 1


@pytest.mark.parametrize("port", [1, 65535, "443"])
def test_ports_in_range_are_accepted(port: int | str) -> None:
    request = CreateEndpointRequest.model_validate(create_body(deploy_metadata={"port": port}))

    assert request.deploy_metadata.port == int(port)


def test_name_and_command_are_trimmed() -> None:
    request = CreateEndpointRequest.model_validate(
        create_body(top={"name": "  llama  "}, deploy_metadata={"command": "  vllm serve  "})
    )

    assert request.name == "llama"
    assert request.deploy_metadata.command == "vllm serve"


def test_environment_variables_with_valid_names_are_accepted() -> None:
    env = {"HF_TOKEN": "secret", "_PRIVATE": "", "cuda_visible_devices": "0"}

    request = CreateEndpointRequest.model_validate(create_body(deploy_metadata={"env": env}))

    assert request.deploy_metadata.env == env


# -- rejected ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("resource_metadata", "target_instance_number"),
        ("deploy_metadata", "port"),
        ("deploy_metadata", "gpu_num"),
    ],
)
@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(section: str, key: str, value: bool) -> None:
    messages = messages_of(create_body(**{section: {key: value}}))

    assert messages == [f"{section}.{key}: must be a whole number, not true/false, got {value!r}"]


@pytest.mark.parametrize("port", [0, -1, 65536, "70000"])
def test_port_outside_1_to_65535_is_rejected(port: int | str) -> None:
    [error] = errors_of(create_body(deploy_metadata={"port": port}))

    assert error["loc"] == ("deploy_metadata", "port")


@pytest.mark.parametrize("value", ["2.5", 2.5, "two", ""])
def test_non_whole_numbers_are_rejected(value: object) -> None:
    [error] = errors_of(create_body(resource_metadata={"target_instance_number": value}))

    assert error["loc"] == ("resource_metadata", "target_instance_number")


@pytest.mark.parametrize("command", ["", "   ", "\n\t"])
def test_empty_command_is_rejected(command: str) -> None:
    [error] = errors_of(create_body(deploy_metadata={"command": command}))

    assert error["loc"] == ("deploy_metadata", "command")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("top", "name", ""),
        ("top", "name", "x" * 129),
        ("top", "description", "x" * 2049),
        ("top", "payment_type", "eur"),
        ("resource_metadata", "flavor_id", " "),
        ("resource_metadata", "scale_type", "sometimes"),
        ("resource_metadata", "scale_policy", "fast"),
        ("deploy_metadata", "image_url", ""),
        ("deploy_metadata", "gpu_num", -1),
    ],
)
def test_invalid_values_are_rejected_at_the_field(section: str, key: str, value: object) -> None:
    [error] = errors_of(create_body(**{section: {key: value}}))

    expected = (key,) if section == "top" else (section, key)
    assert error["loc"] == expected


@pytest.mark.parametrize("name", ["1ST", "MY-VAR", "WITH SPACE", ""])
def test_environment_variable_with_invalid_name_is_rejected(name: str) -> None:
    [error] = errors_of(create_body(deploy_metadata={"env": {name: "x"}}))

    assert error["loc"][:2] == ("deploy_metadata", "env")


@pytest.mark.parametrize(
    ("section", "typo"),
    [("top", "nmae"), ("resource_metadata", "target_instances"), ("deploy_metadata", "cmd")],
)
def test_unknown_fields_are_rejected_so_typos_are_not_ignored(section: str, typo: str) -> None:
    messages = messages_of(create_body(**{section: {typo: "x"}}))

    where = typo if section == "top" else f"{section}.{typo}"
    assert messages == [f"{where}: unknown field; check its spelling against the API reference"]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("top", "name"),
        ("top", "resource_metadata"),
        ("resource_metadata", "flavor_id"),
        ("deploy_metadata", "image_url"),
        ("deploy_metadata", "port"),
    ],
)
def test_missing_required_field_is_named(section: str, key: str) -> None:
    messages = messages_of(create_body(**{section: {key: None}}))

    where = key if section == "top" else f"{section}.{key}"
    assert messages == [f"{where}: required field is missing"]


# -- updates ---------------------------------------------------------------------


def test_empty_update_changes_nothing() -> None:
    request = UpdateEndpointRequest.model_validate({})

    assert request.model_dump(exclude_none=True) == {}


def test_update_accepts_a_partial_section_with_numbers_as_strings() -> None:
    request = UpdateEndpointRequest.model_validate(
        {"resource_metadata": {"target_instance_number": "3"}, "deploy_metadata": {"port": "81"}}
    )

    assert request.resource_metadata is not None
    assert request.resource_metadata.target_instance_number == 3
    assert request.resource_metadata.flavor_id is None
    assert request.deploy_metadata is not None
    assert request.deploy_metadata.port == 81
    assert request.deploy_metadata.command is None


@pytest.mark.parametrize(
    "body",
    [
        {"deploy_metadata": {"port": 0}},
        {"deploy_metadata": {"port": True}},
        {"deploy_metadata": {"command": "  "}},
        {"resource_metadata": {"target_instance_number": False}},
        {"deploy_metadata": {"cmd": "x"}},
        {"colour": "blue"},
    ],
)
def test_update_is_validated_like_create(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        UpdateEndpointRequest.model_validate(body)


# -- accounts ---------------------------------------------------------------------


def test_user_name_must_not_be_blank() -> None:
    with pytest.raises(ValidationError):
        CreateUserRequest.model_validate({"name": "   "})


def test_token_request_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        CreateTokenRequest.model_validate({"user": "alice"})


# -- describe_validation_error ---------------------------------------------------------


def test_location_drops_the_request_part_fastapi_adds() -> None:
    error = {
        "type": "greater_than_equal",
        "loc": ("body", "deploy_metadata", "port"),
        "msg": "Input should be greater than or equal to 1",
        "input": 0,
    }

    assert describe_validation_error(error) == (
        "deploy_metadata.port: Input should be greater than or equal to 1, got 0"
    )


@pytest.mark.parametrize("part", ["query", "path"])
def test_query_and_path_parameters_are_named_without_their_part(part: str) -> None:
    error = {"type": "int_parsing", "loc": (part, "page"), "msg": "bad", "input": "x"}

    assert describe_validation_error(error) == "page: bad, got 'x'"


def test_error_about_the_whole_body_is_placed_at_body() -> None:
    error = {"type": "model_attributes_type", "loc": ("body",), "msg": "Input should be an object"}

    assert describe_validation_error(error) == "body: Input should be an object"


def test_wrong_type_for_a_whole_section_does_not_echo_it_back() -> None:
    error = {
        "type": "dict_type",
        "loc": ("body", "deploy_metadata", "env"),
        "msg": "Input should be a valid dictionary",
        "input": ["A=1"],
    }

    assert describe_validation_error(error) == (
        "deploy_metadata.env: Input should be a valid dictionary"
    )


def test_error_without_details_still_gives_a_message() -> None:
    assert describe_validation_error({}) == "body: invalid value"


def test_real_port_error_names_the_field_and_the_value_sent() -> None:
    [message] = messages_of(create_body(deploy_metadata={"port": 70000}))

    assert message.startswith("deploy_metadata.port: ")
    assert message.endswith("got 70000")
