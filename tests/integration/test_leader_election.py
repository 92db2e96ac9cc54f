"""Controllers electing a leader (controller/leader.py) on each store, with terms that
record what they were asked: one leads at a time, a clean stop hands over at once, and
a leader whose lease was taken stops its loops without finishing them as a leader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text

from moorage.controller.leader import Election
from moorage.models.leases import LeaseTerms
from moorage.store import leases
from moorage.store.db import Database
from moorage.store.leases import Deposed, FencedDatabase

pytestmark = pytest.mark.anyio

TERMS = LeaseTerms(lease_s=1.0, renew_s=0.2)


class RecordingTerm:
    def __init__(self, name: str, db: FencedDatabase, said: list[str]) -> None:
        self.name = name
        self.db = db
        self.said = said

    async def start(self) -> None:
        self.said.append(f"{self.name} start {self.db.epoch}")

    async def finish(self) -> None:
        self.said.append(f"{self.name} finish")

    async def abandon(self) -> None:
        self.said.append(f"{self.name} abandon")


def _election(db: Database, name: str, said: list[str]) -> Election:
    return Election(db, name, TERMS, lambda fenced: RecordingTerm(name, fenced, said))


async def _until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _running(
    elections: list[Election], body: Callable[[list[asyncio.Event]], Awaitable[None]]
) -> None:
    stops = [asyncio.Event() for _ in elections]
    tasks = [asyncio.create_task(e.run(s)) for e, s in zip(elections, stops, strict=True)]
    try:
        await body(stops)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


async def test_one_leads_and_a_clean_stop_hands_over_at_once(db: Database) -> None:
    said: list[str] = []
    first, second = _election(db, "c1", said), _election(db, "c2", said)

    async def body(stops: list[asyncio.Event]) -> None:
        await _until(lambda: first.leading or second.leading)
        await asyncio.sleep(0.5)  # several looks: still one leader
        assert [first.leading, second.leading].count(True) == 1
        leader, stop = (first, stops[0]) if first.leading else (second, stops[1])
        other = second if leader is first else first
        stopped_at = asyncio.get_running_loop().time()
        stop.set()
        await _until(lambda: other.leading and f"{other.me} start 2" in said)
        # Released, not expired: the standby's next look (renew_s) takes it.
        assert asyncio.get_running_loop().time() - stopped_at < TERMS.lease_s
        assert f"{leader.me} finish" in said

    await _running([first, second], body)


async def test_a_leader_whose_lease_was_taken_abandons_its_term(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    said: list[str] = []
    leader = _election(db, "c1", said)

    async def body(_stops: list[asyncio.Event]) -> None:
        await _until(lambda: leader.leading)
        with db.session() as session:  # another controller took it over
            session.execute(
                text("UPDATE controller_leases SET holder = 'c9', epoch = 7, expires_at = 1e12")
            )
        await _until(lambda: "c1 abandon" in said)
        assert not leader.leading
        assert "c1 finish" not in said
        with pytest.raises(Deposed), FencedDatabase(db, 1).session():
            pass

    with caplog.at_level(logging.INFO, logger="moorage.controller"):
        await _running([leader], body)
    lost = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
    assert lost == [
        "controller c1 lost the lease: c9 holds it now (epoch 7); its loops stopped, its "
        "replicas keep running; standing by"
    ]
    with db.session() as session:
        assert leases.read(session).holder == "c9"
