"""``MOORAGE_LOG_FORMAT=json``: one JSON object per record, the ids as fields; the text
format: one line per record, whatever a replica or a user put in the message."""

from __future__ import annotations

import json
import logging
import sys

from moorage.logformat import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "moorage.lifecycle", logging.WARNING, __file__, 1, "endpoint %s: %s", ("e1", "x"), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_record_is_one_line_of_json_with_its_fields() -> None:
    line = JsonFormatter().format(_record(endpoint_id="e1", replica_id="r1", revision=2))

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "moorage.lifecycle"
    assert entry["message"] == "endpoint e1: x"
    assert entry["time"].endswith("+00:00")
    assert (entry["endpoint_id"], entry["replica_id"], entry["revision"]) == ("e1", "r1", 2)
    assert "args" not in entry
    assert "msg" not in entry


def test_a_message_with_newlines_and_an_exception_stays_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    record.msg, record.args = "two\nlines", ()

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines"
    assert "ValueError: bad" in entry["exception"]


FORGED = "boom\nINFO:     moorage.lifecycle: endpoint e2 (svc) deleted by admin\n\x1b[2J"


def test_a_text_record_shows_line_breaks_and_controls_visibly() -> None:
    record = _record()
    record.args = ("e1", FORGED + "\r\x9b\u2028\u202e")

    line = TextFormatter().format(record)

    assert line == (
        "WARNING:     moorage.lifecycle: endpoint e1: boom\\nINFO:     moorage.lifecycle: "
        "endpoint e2 (svc) deleted by admin\\n\\x1b[2J\\r\\x9b\\u2028\\u202e"
    )
    assert line.splitlines() == [line]
    # The record itself is left as it was, for any other handler.
    assert record.getMessage() == "endpoint e1: " + FORGED + "\r\x9b\u2028\u202e"


def test_a_json_record_escapes_what_json_dumps_leaves_raw() -> None:
    record = _record(detail="\x85\u2028")
    record.args = ("e1", FORGED + "\x9b\u2029")

    line = JsonFormatter().format(record)

    assert line.splitlines() == [line]
    assert not any(c in line for c in "\x1b\x85\x9b\u2028\u2029")
    entry = json.loads(line)
    assert entry["message"] == "endpoint e1: " + FORGED + "\x9b\u2029"
    assert entry["detail"] == "\x85\u2028"
