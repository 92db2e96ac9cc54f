"""GPU use per replica on ``/metrics``: NVML read in a thread of its own, shown with
which replica holds each GPU.

A scrape never waits for the driver: ``GpuReadings`` samples every GPU at an
interval in a background thread and keeps the last answer, and ``GpuCollector``
only formats that answer with the allocations it is handed (the caller reads
them from the store and caches them). A GPU that stops answering is left out of
the readings, with one log line when it starts failing and one when it answers
again, not one per sample.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.inventory.nvml import GpuReadFailure, GpuReading, NvmlSampler, NvmlUnavailable
from moorage.models.gpus import Gpu

__all__ = ["Allocations", "GpuCollector", "GpuReadings", "gpu_families"]

log = logging.getLogger(__name__)

LABELS = ("gpu_uuid", "gpu_model", "service_id", "replica_id")


@dataclass(frozen=True)
class Allocations:
    """The GPUs moorage offers (NVML's and the flavors file's) and, by UUID, the
    ``(service_id, replica_id)`` holding each one that is held."""

    gpus: tuple[Gpu, ...] = ()
    holders: Mapping[str, tuple[str, str]] = field(default_factory=dict)


class GpuReadings:
    """The last reading of each GPU NVML can read, refreshed every ``interval_s`` by
    a daemon thread (``start``/``stop``), or by ``sample_once`` in tests."""

    def __init__(self, nvml: NvmlSampler, interval_s: float) -> None:
        self._nvml = nvml
        self.interval_s = interval_s
        # Replaced whole, never changed in place: any thread may read it without a lock.
        self._latest: Mapping[str, GpuReading] = {}
        self._failing: frozenset[str] = frozenset()
        self._answered = False  # has NVML ever answered? (a host without a driver is quiet)
        self._unavailable = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> Mapping[str, GpuReading]:
        """By UUID, the last reading of every GPU that answered it."""
        return self._latest

    def sample_once(self) -> None:
        try:
            answers = self._nvml.sample()
        except NvmlUnavailable as exc:
            if self._answered and not self._unavailable:
                log.warning("NVML stopped answering (%s): no GPU readings until it does", exc)
            self._unavailable = True
            self._latest = {}
            return
        if self._unavailable and self._answered:
            log.info("NVML answers again")
        self._answered, self._unavailable = True, False
        readings: dict[str, GpuReading] = {}
        failing: set[str] = set()
        for answer in answers:
            if isinstance(answer, GpuReadFailure):
                failing.add(answer.key)
                if answer.key not in self._failing:
                    log.warning(
                        "GPU %s cannot be read (%s): its gauges are left out of /metrics "
                        "until it can",
                        answer.key,
                        answer.reason,
                    )
                continue
            readings[answer.uuid] = answer
            if answer.uuid in self._failing:
                log.info("GPU %s can be read again", answer.uuid)
        self._failing = frozenset(failing)
        self._latest = readings

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpu-readings", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the thread; NVML is shut down once the thread is out of it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("the GPU readings thread is still in an NVML call; left to exit")
                return
        close = getattr(self._nvml, "close", None)
        if callable(close):
            close()

    def _run(self) -> None:
        crashed = False
        while True:
            try:
                self.sample_once()
            except Exception:  # a binding's surprise must not end the readings for good
                if not crashed:  # logged when it starts, not at every sample
                    log.exception("reading the GPUs through NVML failed; trying again")
                crashed = True
                self._latest = {}
            else:
                crashed = False
            if self._stop.wait(self.interval_s):
                return


def gpu_families(readings: Mapping[str, GpuReading], allocations: Allocations) -> list[Metric]:
    """The gauges of every GPU: ``moorage_gpu_allocated`` for each GPU offered or
    read, the readings only for GPUs NVML read. Labels name the GPU and, when a
    replica holds it, the replica and its endpoint (empty otherwise)."""
    labels = list(LABELS)
    allocated = GaugeMetricFamily(
        "moorage_gpu_allocated", "1 when a replica holds the GPU, else 0.", labels=labels
    )
    utilization = GaugeMetricFamily(
        "moorage_gpu_utilization_ratio",
        "Share of the last sample period in which a kernel ran on the GPU (0 to 1).",
        labels=labels,
    )
    used = GaugeMetricFamily("moorage_gpu_memory_used_bytes", "GPU memory in use.", labels=labels)
    total = GaugeMetricFamily(
        "moorage_gpu_memory_total_bytes", "GPU memory installed.", labels=labels
    )
    temperature = GaugeMetricFamily(
        "moorage_gpu_temperature_celsius", "GPU core temperature.", labels=labels
    )
    power = GaugeMetricFamily(
        "moorage_gpu_power_watts", "GPU power draw (where the GPU measures it).", labels=labels
    )
    offered = {gpu.uuid: gpu for gpu in allocations.gpus}
    uuids = [gpu.uuid for gpu in sorted(allocations.gpus)]
    uuids += sorted(uuid for uuid in readings if uuid not in offered)
    for uuid in uuids:
        reading = readings.get(uuid)
        gpu = offered.get(uuid)
        model = reading.name if reading else gpu.model if gpu else ""
        holder = allocations.holders.get(uuid)
        values = [uuid, model, *(holder or ("", ""))]
        allocated.add_metric(values, 1.0 if holder else 0.0)
        if reading is None:
            continue
        utilization.add_metric(values, reading.utilization_ratio)
        used.add_metric(values, reading.memory_used_bytes)
        total.add_metric(values, reading.memory_total_bytes)
        temperature.add_metric(values, reading.temperature_celsius)
        if reading.power_watts is not None:
            power.add_metric(values, reading.power_watts)
    return [allocated, utilization, used, total, temperature, power]


class GpuCollector(Collector):
    """``gpu_families`` at scrape time, from ``readings`` and ``allocations`` (which
    must answer quickly: a cache, not the store itself)."""

    def __init__(self, readings: GpuReadings, allocations: Callable[[], Allocations]) -> None:
        self._readings = readings
        self._allocations = allocations

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering reads neither NVML nor the store.
        yield from gpu_families({}, Allocations())

    def collect(self) -> Iterator[Metric]:
        try:
            allocations = self._allocations()
        except Exception:  # the store is away: readings still show, without holders
            log.warning("GPU allocations could not be read for /metrics", exc_info=True)
            allocations = Allocations()
        yield from gpu_families(self._readings.latest(), allocations)
