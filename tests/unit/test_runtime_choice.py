"""Which runtime the settings ask for, and a contradiction refused before anything
starts: an operator who set a Ray address must not have replicas run elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.composition import make_runtime
from moorage.errors import MoorageError
from moorage.settings import Settings


def test_a_ray_address_alone_selects_the_ray_runtime(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, ray_address="10.0.0.1:6379")
    assert settings.resolved_runtime == "ray"
    assert Settings(home=tmp_path).resolved_runtime == "auto"


@pytest.mark.parametrize("runtime", ["process", "docker"])
def test_a_ray_address_beside_another_runtime_is_refused_naming_both(
    tmp_path: Path, runtime: str
) -> None:
    settings = Settings(home=tmp_path, runtime=runtime, ray_address="10.0.0.1:6379")
    with pytest.raises(MoorageError) as refused:
        make_runtime(settings)
    message = str(refused.value)
    assert "MOORAGE_RAY_ADDRESS" in message
    assert f"MOORAGE_RUNTIME={runtime}" in message
    assert "MOORAGE_RUNTIME=ray" in message


def test_the_ray_runtime_without_an_address_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(MoorageError, match="MOORAGE_RAY_ADDRESS"):
        make_runtime(Settings(home=tmp_path, runtime="ray"))
