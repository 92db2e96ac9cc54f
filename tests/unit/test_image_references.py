"""``image_url`` is an image reference, nothing that could walk out of the container
engine's API paths (the docker runtime puts it into ``/images/<name>/json``)."""

from __future__ import annotations

import pytest

from moorage.models.images import image_reference_problem
from moorage.models.requests import CreateEndpointRequest

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "reference",
    [
        "python:3.10-slim",
        "python",
        "local",
        "ignored-by-the-process-runtime",
        "localhost/moorage-python:bookworm",
        "ghcr.io/org/model-server:1.2",
        "registry.example.com:5000/team/app@" + DIGEST,
        "registry.example.com:5000/team/app:v1_2.3@" + DIGEST,
        "127.0.0.1:5000/a__b/c--d:TAG",
        "vllm/vllm-openai:v0.6.3",
    ],
)
def test_image_references_are_accepted(reference: str) -> None:
    assert image_reference_problem(reference) is None


@pytest.mark.parametrize(
    "reference",
    [
        "../../containers",
        "../../x",
        "/images/json",
        "python/../../containers",
        "python:3.10-slim/../..",
        "Python:3.10",
        "python:",
        "python@sha256:short",
        "python 3",
        "python:3.10?all=1",
        "python#frag",
        "registry.example.com:5000/",
    ],
)
def test_anything_else_is_refused_saying_what_a_reference_is(reference: str) -> None:
    problem = image_reference_problem(reference)
    assert problem is not None
    assert problem.startswith("must be an image reference")


def test_the_api_refuses_a_path_in_image_url_naming_the_field() -> None:
    body = {
        "name": "walk",
        "resource_metadata": {"flavor_id": "f"},
        "deploy_metadata": {"image_url": "../../containers", "command": "x", "port": 8080},
    }
    with pytest.raises(ValueError, match="must be an image reference") as caught:
        CreateEndpointRequest.model_validate(body)
    assert "image_url" in str(caught.value)
