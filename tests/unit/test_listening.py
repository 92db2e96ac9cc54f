"""Reading a replica's listening ports from ``/proc`` tables, and what the controller
keeps of a starting replica between passes (``controller/startup_watch.py``)."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

from moorage.controller.plan import ProbeRecord
from moorage.controller.startup_watch import next_watch
from moorage.models.replicas import ReplicaState, StartupWatch
from moorage.runtimes.listening import (
    Listening,
    inside_only,
    listeners_of,
    parse_listeners,
    parse_tcp_table,
    ports_of,
)
from tests.unit.builders import at, make_replica

TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1
   1: 0100007F:A0D2 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 333 1
"""


def test_listening_sockets_are_read_and_connections_ignored() -> None:
    assert parse_tcp_table(TABLE, None) == {8080, 41170}


def test_in_a_shared_namespace_only_the_replicas_own_sockets_count() -> None:
    assert parse_tcp_table(TABLE, {222}) == {41170}


def test_this_processs_own_listening_socket_is_found() -> None:
    import os

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port in (ports_of([os.getpid()]) or ())


def test_a_gone_process_has_no_ports_to_tell() -> None:
    assert ports_of([2**22 + 12345]) is None


def record(detail: str, started_s: float, finished_s: float) -> ProbeRecord:
    return ProbeRecord(False, detail, at(started_s), at(finished_s), 1)


def test_a_probe_answer_is_kept_with_the_time_it_first_came() -> None:
    replica = make_replica("r-1", state=ReplicaState.STARTING, since=at(0))

    first = next_watch(replica, record("GET /: answered 503", 5, 6), None)
    again = next_watch(
        dataclasses.replace(replica, startup=first), record("GET /: answered 503", 9, 10), None
    )

    assert first == StartupWatch(probe="GET /: answered 503", probe_since=at(6))
    assert again == first  # unchanged: nothing to write


def test_a_probe_from_the_replicas_previous_life_is_ignored() -> None:
    replica = make_replica("r-1", state=ReplicaState.STARTING, since=at(100))

    watch = next_watch(replica, record("GET /: answered 200", 90, 91), Listening(5000, (5000,)))

    assert watch == StartupWatch(given_port=5000, listening=(5000,))


# A container's table: 127.0.0.1:8000 (loopback alone), 0.0.0.0:9000, and in tcp6
# [::1]:7000, [::ffff:127.0.0.1]:6000 and [::]:9000.
TABLE4 = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 11 1
   1: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12 1
"""
TABLE6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1B58 00000000000000000000000000000000:0000 0A 0 0 0 0 0 13 1
   1: 0000000000000000FFFF00000100007F:1770 00000000000000000000000000000000:0000 0A 0 0 0 0 0 14 1
   2: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 0 0 0 0 0 15 1
"""


def test_each_listening_sockets_address_is_read() -> None:
    found = parse_listeners(TABLE4, None) | parse_listeners(TABLE6, None)

    assert {(str(address), port) for address, port in found} == {
        ("127.0.0.1", 8000),
        ("0.0.0.0", 9000),
        ("::1", 7000),
        ("::ffff:7f00:1", 6000),
        ("::", 9000),
    }


def test_ports_listened_on_at_loopback_alone_are_named_with_their_address() -> None:
    found = parse_listeners(TABLE4, None) | parse_listeners(TABLE6, None)

    assert inside_only(found) == ("[::ffff:7f00:1]:6000", "[::1]:7000", "127.0.0.1:8000")


def test_a_port_also_listened_on_at_all_addresses_is_reachable() -> None:
    both = parse_listeners(TABLE4, None) | {(ipaddress.ip_address("0.0.0.0"), 8000)}

    assert inside_only(both) == ()


def test_this_processs_loopback_socket_is_found_with_its_address() -> None:
    import os

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        found = listeners_of([os.getpid()]) or set()

    assert (ipaddress.ip_address("127.0.0.1"), port) in found
    assert f"127.0.0.1:{port}" in inside_only(found)


def test_what_only_the_container_reaches_is_kept_in_the_watch() -> None:
    replica = make_replica("r-1", state=ReplicaState.STARTING, since=at(0))

    watch = next_watch(replica, None, Listening(8000, (8000,), ("127.0.0.1:8000",)))

    assert watch.unreachable == "127.0.0.1:8000"
