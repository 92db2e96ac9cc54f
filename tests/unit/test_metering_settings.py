"""MOORAGE_METERING_INTERVAL_S: how often usage is closed into records, within bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from moorage.settings import Settings


def test_usage_is_checkpointed_every_minute_by_default() -> None:
    assert Settings().metering_interval_s == 60


def test_the_interval_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_METERING_INTERVAL_S", "15")
    assert Settings().metering_interval_s == 15


@pytest.mark.parametrize("interval", [0.5, 3601])
def test_the_interval_setting_has_bounds(interval: float) -> None:
    with pytest.raises(ValidationError, match="metering_interval_s"):
        Settings(metering_interval_s=interval)
