"""Each recorded replica event said as one sentence a user can act on."""

from __future__ import annotations

import pytest

from moorage.models.events import describe
from moorage.models.replicas import FailureReason, ReplicaEvent, ReplicaEventKind
from tests.unit.builders import T0


def _event(
    kind: ReplicaEventKind,
    *,
    address: str | None = None,
    reason: FailureReason | None = None,
    detail: str | None = None,
) -> ReplicaEvent:
    return ReplicaEvent("r-1", "ep-1", kind, T0, address, reason, detail)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (_event(ReplicaEventKind.REQUESTED), "replica r-1 (revision 2) was requested"),
        (
            _event(ReplicaEventKind.STARTED, address="127.0.0.1:9001"),
            "replica r-1 (revision 2) started at 127.0.0.1:9001",
        ),
        (
            _event(ReplicaEventKind.STARTED, address="127.0.0.1:9001", detail="adopted"),
            "replica r-1 (revision 2) was adopted after a restart at 127.0.0.1:9001",
        ),
        (
            _event(ReplicaEventKind.READY),
            "replica r-1 (revision 2) is ready: it passed its readiness probe and takes requests",
        ),
        (
            _event(ReplicaEventKind.UNREADY, detail="stopping: scaled down"),
            "replica r-1 (revision 2) left the rotation: stopping: scaled down",
        ),
        (
            _event(
                ReplicaEventKind.FAILED,
                reason=FailureReason.EXITED,
                detail="exited with code 1; last output: ImportError",
            ),
            "replica r-1 (revision 2) failed (exited): "
            "exited with code 1; last output: ImportError",
        ),
        (
            _event(ReplicaEventKind.STOPPED, detail="replaced by a newer revision"),
            "replica r-1 (revision 2) stopped: replaced by a newer revision",
        ),
    ],
)
def test_each_event_reads_as_one_sentence(event: ReplicaEvent, expected: str) -> None:
    assert describe(event, 2) == expected
