"""``MOORAGE_LOG_FORMAT=json``: one JSON object per record, the ids as fields."""

from __future__ import annotations

import json
import logging
import sys

from moorage.logformat import JsonFormatter


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
