"""What the SDK raises: the server's refusal as it was given, or why no answer came.

Every error carries the server's stable ``code`` to branch on and its ``message``,
which says what to do; ``str(error)`` is that message, so a program that prints an
error prints what the server said.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moorage.api.schemas import Endpoint

# Codes of errors that never reached a server (``status`` 0).
UNREACHABLE = "unreachable"
NO_TOKEN = "no_token"
ANSWER_TOO_LARGE = "answer_too_large"
ANSWER_TOO_SLOW = "answer_too_slow"
# An answer that is not what the API's document says (another program on that port).
BAD_ANSWER = "bad_answer"
# A call the client refuses to send (an empty id).
INVALID_ARGUMENT = "invalid_argument"


class MoorageError(Exception):
    """Anything the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(MoorageError):
    """A refusal from the server (``status`` its HTTP status), or, with ``status`` 0, a
    call that could not be made: no token (``no_token``) or no server answering at the
    URL (``unreachable``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r})"


class WaitFailed(MoorageError):
    """The endpoint will not become available by waiting: a replica cannot run, its
    new revision was rolled back, or it was stopped or deleted meanwhile. ``endpoint``
    is the last state read."""

    def __init__(self, message: str, endpoint: Endpoint) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class WaitTimeout(MoorageError):
    """The endpoint was still not available when the wait's time ran out."""

    def __init__(self, message: str, endpoint: Endpoint) -> None:
        super().__init__(message)
        self.endpoint = endpoint
