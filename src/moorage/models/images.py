"""What an ``image_url`` may be: an image reference as registries and engines define it.

The docker runtime puts the reference into the container engine's API paths
(``/images/<name>/json``); a value with ``..`` or a leading ``/`` would walk out
of them and make moorage, which holds the engine's socket, read other tenants'
containers for the caller. So only the grammar of the distribution project's
references is accepted (``[registry[:port]/]path[:tag][@algorithm:digest]``, path
components lower case), on every runtime, at the API and again before a pull.
"""

from __future__ import annotations

import re

__all__ = ["IMAGE_REFERENCE_PATTERN", "image_reference_problem"]

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]{{1,5}})?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# The domain is optional; a first component that looks like one (a dot, a port, or
# "localhost") is read as one, as the engines do.
IMAGE_REFERENCE_PATTERN = (
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
_REFERENCE = re.compile(IMAGE_REFERENCE_PATTERN)


def image_reference_problem(reference: str) -> str | None:
    """Why ``reference`` is not an image reference, in words that say what is; None
    when it is one."""
    if _REFERENCE.fullmatch(reference):
        return None
    return (
        "must be an image reference, [registry[:port]/]name[:tag][@sha256:digest], with "
        "the name's parts in lower case letters, digits and . _ - (such as "
        "python:3.10-slim, ghcr.io/org/model-server:1.2 or "
        "registry.example.com:5000/team/app@sha256:<64 hex digits>)"
    )
