"""GPU use per replica on ``/metrics``: NVML's readings (through ``FakeNvml`` and a
stand-in ``pynvml``), who holds each GPU, and the gauges a scrape shows."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
import types
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from moorage.inventory.gpu_metrics import Allocations, GpuCollector, GpuReadings
from moorage.inventory.nvml import (
    FakeNvml,
    GpuReadFailure,
    GpuReading,
    Nvml,
    NvmlDevice,
    NvmlReport,
)
from moorage.models.gpus import LOCAL_NODE, Gpu
from moorage.settings import Settings

FAKE_PYNVML = Path(__file__).parents[1] / "support" / "fake_pynvml" / "pynvml.py"
H100 = "NVIDIA H100 80GB HBM3"
GIB = 2**30

Sample = dict[tuple[str, str], dict[str, Any]]


def two_h100s() -> FakeNvml:
    return FakeNvml(
        NvmlReport(
            "550.54.15",
            "12.4",
            (
                NvmlDevice(0, "GPU-h100-0", H100, 81559),
                NvmlDevice(1, "GPU-h100-1", H100, 81559),
            ),
        )
    )


# Both H100s NVML sees, and an L4 only the flavors file declares.
OFFERED = (
    Gpu(LOCAL_NODE, 0, "GPU-h100-0", H100, 81559),
    Gpu(LOCAL_NODE, 1, "GPU-h100-1", H100, 81559),
    Gpu(LOCAL_NODE, 2, "GPU-l4-0", "NVIDIA L4", 23034),
)


def scrape(collector: GpuCollector) -> Sample:
    """By (metric, GPU UUID), the labels and value a Prometheus scrape reads."""
    registry = CollectorRegistry()
    registry.register(collector)
    found: Sample = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels: dict[str, Any] = dict(sample.labels)
            labels["value"] = sample.value
            found[(sample.name, sample.labels["gpu_uuid"])] = labels
    return found


def test_a_held_gpu_shows_its_replica_and_readings_in_base_units() -> None:
    nvml = two_h100s()
    nvml.set_reading(
        "GPU-h100-0",
        utilization_ratio=0.87,
        memory_used_bytes=40 * GIB,
        temperature_celsius=64,
        power_watts=512.5,
    )
    readings = GpuReadings(nvml, interval_s=5)
    readings.sample_once()
    held = Allocations(OFFERED, {"GPU-h100-0": ("svc-1", "rep-1"), "GPU-l4-0": ("svc-2", "rep-2")})
    found = scrape(GpuCollector(readings, lambda: held))

    holder = {"gpu_uuid": "GPU-h100-0", "gpu_model": H100, "service_id": "svc-1"}
    expected = {
        "moorage_gpu_allocated": 1.0,
        "moorage_gpu_utilization_ratio": 0.87,
        "moorage_gpu_memory_used_bytes": 40 * GIB,
        "moorage_gpu_memory_total_bytes": 81559 * 2**20,
        "moorage_gpu_temperature_celsius": 64.0,
        "moorage_gpu_power_watts": 512.5,
    }
    for name, value in expected.items():
        assert found[(name, "GPU-h100-0")] == {**holder, "replica_id": "rep-1", "value": value}

    # Free and read: readings, no holder.
    free = found[("moorage_gpu_allocated", "GPU-h100-1")]
    assert (free["service_id"], free["replica_id"], free["value"]) == ("", "", 0.0)
    assert found[("moorage_gpu_utilization_ratio", "GPU-h100-1")]["value"] == 0.0
    # Declared, not seen by NVML: its holder, and no reading at all.
    l4 = found[("moorage_gpu_allocated", "GPU-l4-0")]
    assert (l4["gpu_model"], l4["service_id"], l4["replica_id"]) == ("NVIDIA L4", "svc-2", "rep-2")
    assert [name for name, uuid in found if uuid == "GPU-l4-0"] == ["moorage_gpu_allocated"]


def test_a_gpu_without_a_power_sensor_has_no_power_gauge() -> None:
    nvml = two_h100s()
    nvml.set_reading("GPU-h100-1", power_watts=None)
    readings = GpuReadings(nvml, interval_s=5)
    readings.sample_once()
    found = scrape(GpuCollector(readings, lambda: Allocations(OFFERED)))
    assert ("moorage_gpu_power_watts", "GPU-h100-0") in found
    assert ("moorage_gpu_power_watts", "GPU-h100-1") not in found
    assert ("moorage_gpu_temperature_celsius", "GPU-h100-1") in found


def test_a_scrape_reads_the_cached_sample_never_nvml() -> None:
    nvml = two_h100s()
    readings = GpuReadings(nvml, interval_s=5)
    readings.sample_once()
    collector = GpuCollector(readings, lambda: Allocations(OFFERED))
    for _ in range(3):
        scrape(collector)
    assert nvml.samples == 1


def test_registering_the_collector_reads_neither_nvml_nor_the_store() -> None:
    nvml = two_h100s()

    def no_store() -> Allocations:
        raise AssertionError("read at registration")

    registry = CollectorRegistry(auto_describe=True)
    registry.register(GpuCollector(GpuReadings(nvml, interval_s=5), no_store))
    assert nvml.samples == 0


def test_readings_still_show_when_the_store_cannot_be_read() -> None:
    readings = GpuReadings(two_h100s(), interval_s=5)
    readings.sample_once()

    def store_down() -> Allocations:
        raise OSError("database is locked")

    found = scrape(GpuCollector(readings, store_down))
    assert found[("moorage_gpu_allocated", "GPU-h100-0")]["value"] == 0.0
    assert ("moorage_gpu_utilization_ratio", "GPU-h100-0") in found


def test_a_failing_gpu_is_left_out_and_logged_once_when_it_starts_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = two_h100s()
    readings = GpuReadings(nvml, interval_s=5)
    caplog.set_level(logging.INFO, logger="moorage.inventory.gpu_metrics")
    readings.sample_once()
    nvml.fail("GPU-h100-1", "Unknown Error")
    for _ in range(3):
        readings.sample_once()
    assert set(readings.latest()) == {"GPU-h100-0"}
    failures = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert failures == [
        "GPU GPU-h100-1 cannot be read (Unknown Error): its gauges are left out of /metrics "
        "until it can"
    ]
    nvml.set_reading("GPU-h100-1")
    readings.sample_once()
    assert set(readings.latest()) == {"GPU-h100-0", "GPU-h100-1"}
    assert [r.getMessage() for r in caplog.records][-1] == "GPU GPU-h100-1 can be read again"


def test_a_host_without_a_driver_has_no_readings_and_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    readings = GpuReadings(FakeNvml(None), interval_s=5)
    caplog.set_level(logging.DEBUG, logger="moorage.inventory.gpu_metrics")
    readings.sample_once()
    readings.sample_once()
    assert readings.latest() == {}
    assert caplog.records == []


def test_the_thread_samples_at_its_interval_and_stops() -> None:
    nvml = two_h100s()
    readings = GpuReadings(nvml, interval_s=0.05)
    readings.start()
    try:
        deadline = time.monotonic() + 10
        while nvml.samples < 3:
            assert time.monotonic() < deadline, "the thread never sampled three times"
            time.sleep(0.01)
    finally:
        readings.stop()
    stopped_at = nvml.samples
    time.sleep(0.2)
    assert nvml.samples == stopped_at
    assert set(readings.latest()) == {"GPU-h100-0", "GPU-h100-1"}


@pytest.mark.parametrize("interval", [0.5, 301])
def test_the_interval_setting_has_bounds(interval: float) -> None:
    with pytest.raises(ValidationError, match="gpu_metrics_interval_s"):
        Settings(gpu_metrics_interval_s=interval)


# -- the real reader, on a stand-in pynvml ------------------------------------------------


def stand_in_pynvml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpus: list[dict[str, Any]]
) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE_PYNVML)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    listing = tmp_path / "gpus.json"
    listing.write_text(json.dumps(gpus))
    monkeypatch.setenv("FAKE_PYNVML_GPUS", str(listing))
    return module


def test_nvml_sample_converts_units_and_reads_past_a_broken_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gpu = {"name": H100, "memory_total": 80 * GIB, "memory_used": GIB, "temperature": 55}
    module = stand_in_pynvml(
        monkeypatch,
        tmp_path,
        [
            {**gpu, "uuid": "GPU-a", "utilization": 42, "power_mw": 301250},
            {**gpu, "uuid": "GPU-b", "broken": True},
            {**gpu, "uuid": "GPU-c", "utilization": 0, "power_mw": None},
        ],
    )
    nvml = Nvml(module)
    first, broken, no_power = nvml.sample()
    assert first == GpuReading("GPU-a", H100, 0.42, GIB, 80 * GIB, 55.0, 301.25)
    assert broken == GpuReadFailure("GPU-b", "GPU is lost")
    assert isinstance(no_power, GpuReading)
    assert no_power.power_watts is None
    nvml.close()


def test_nvml_sample_initialises_once_and_close_shuts_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = stand_in_pynvml(
        monkeypatch, tmp_path, [{"uuid": "GPU-a", "name": H100, "memory_total": GIB}]
    )
    calls: list[str] = []
    monkeypatch.setattr(module, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(module, "nvmlShutdown", lambda: calls.append("shutdown"))
    nvml = Nvml(module)
    nvml.sample()
    nvml.sample()
    nvml.close()
    nvml.close()
    assert calls == ["init", "shutdown"]


def test_a_reader_that_raises_is_logged_once_and_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Surprising:
        def __init__(self) -> None:
            self.samples = 0

        def sample(self) -> tuple[GpuReading | GpuReadFailure, ...]:
            self.samples += 1
            raise AttributeError("nvmlDeviceGetPowerUsage")

    nvml = Surprising()
    readings = GpuReadings(nvml, interval_s=0.01)
    readings.start()
    try:
        deadline = time.monotonic() + 10
        while nvml.samples < 5:
            assert time.monotonic() < deadline, "the thread stopped trying"
            time.sleep(0.01)
    finally:
        readings.stop()
    failures = [r for r in caplog.records if r.name == "moorage.inventory.gpu_metrics"]
    assert [r.getMessage() for r in failures] == [
        "reading the GPUs through NVML failed; trying again"
    ]
    assert readings.latest() == {}
