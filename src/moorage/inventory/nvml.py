"""NVML behind one small class: what the driver reports of this host's GPUs.

``Nvml.read`` (the devices, once at start) and ``Nvml.sample`` (each GPU's use,
for ``/metrics``) are the only calls into ``pynvml`` (nvidia-ml-py) in moorage;
tests and hosts without a driver use ``FakeNvml``, which answers a fixed report
and readings a test sets. Both raise ``NvmlUnavailable`` when there is nothing
to read, with the driver's reason, so the caller can say why no GPU was found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FakeNvml",
    "GpuReadFailure",
    "GpuReading",
    "Nvml",
    "NvmlDevice",
    "NvmlReader",
    "NvmlReport",
    "NvmlSampler",
    "NvmlUnavailable",
]

# More devices than any host holds means a broken driver answer, not GPUs.
MAX_DEVICES = 64


@dataclass(frozen=True)
class NvmlDevice:
    index: int
    uuid: str
    name: str
    memory_mib: int
    # N of the device file /dev/nvidiaN; None where the driver does not say (a MIG
    # instance, or a driver without the call).
    minor_number: int | None = None


@dataclass(frozen=True)
class NvmlReport:
    driver_version: str
    # "12.4", from the driver's CUDA version; None when the driver does not say.
    cuda_version: str | None
    devices: tuple[NvmlDevice, ...]


@dataclass(frozen=True)
class GpuReading:
    """One GPU's use at one moment, in base units (``/metrics`` shows them as read)."""

    uuid: str
    name: str
    utilization_ratio: float  # NVML's percent of time a kernel ran, as 0..1
    memory_used_bytes: int
    memory_total_bytes: int
    temperature_celsius: float
    # None where the GPU does not measure its power (NVML answers NotSupported).
    power_watts: float | None


@dataclass(frozen=True)
class GpuReadFailure:
    """A GPU NVML lists but could not read: ``key`` is its UUID, or ``index N`` when
    even that failed; ``reason`` is NVML's."""

    key: str
    reason: str


class NvmlUnavailable(Exception):
    """No NVIDIA driver answers on this host (the message is the driver's reason)."""


class NvmlReader(Protocol):
    def read(self) -> NvmlReport: ...


class NvmlSampler(Protocol):
    def sample(self) -> tuple[GpuReading | GpuReadFailure, ...]: ...


class Nvml:
    """The real NVML. ``module`` stands in for ``pynvml`` in tests."""

    def __init__(self, module: Any | None = None) -> None:
        self._module = module
        # ``sample`` keeps NVML initialised between calls (an init can take a tenth of a
        # second per GPU); ``close`` shuts it down.
        self._sampling = False

    def _pynvml(self) -> Any:
        if self._module is None:
            try:
                self._module = importlib.import_module("pynvml")
            except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a dependency
                raise NvmlUnavailable(f"nvidia-ml-py is not installed: {exc}") from exc
        return self._module

    def read(self) -> NvmlReport:
        nvml = self._pynvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise NvmlUnavailable(str(exc) or type(exc).__name__) from exc
        try:
            count = min(int(nvml.nvmlDeviceGetCount()), MAX_DEVICES)
            devices = []
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                devices.append(
                    NvmlDevice(
                        index=index,
                        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                        name=_text(nvml.nvmlDeviceGetName(handle)),
                        memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20,
                        minor_number=_minor_number(nvml, handle),
                    )
                )
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            cuda = _cuda_version(nvml)
        except nvml.NVMLError as exc:
            raise NvmlUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            nvml.nvmlShutdown()
        return NvmlReport(driver, cuda, tuple(devices))

    def sample(self) -> tuple[GpuReading | GpuReadFailure, ...]:
        """Each GPU's use now; a GPU that cannot be read is a ``GpuReadFailure`` and
        the others are still read. ``NvmlUnavailable`` when the driver does not answer."""
        nvml = self._pynvml()
        try:
            if not self._sampling:
                nvml.nvmlInit()
                self._sampling = True
            count = min(int(nvml.nvmlDeviceGetCount()), MAX_DEVICES)
        except nvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(str(exc) or type(exc).__name__) from exc
        return tuple(_sample_one(nvml, index) for index in range(count))

    def close(self) -> None:
        """Shuts down what ``sample`` initialised, if anything."""
        if self._sampling:
            self._sampling = False
            with contextlib.suppress(Exception):
                self._pynvml().nvmlShutdown()


class FakeNvml:
    """A host's NVML answer, fixed: ``None`` is a host with no NVIDIA driver. Each
    device samples as idle (nothing used) until a test sets its reading or fails it."""

    def __init__(self, report: NvmlReport | None) -> None:
        self.report = report
        self.reads = 0
        self.samples = 0
        self.readings: dict[str, GpuReading] = {}
        self.failures: dict[str, str] = {}

    def read(self) -> NvmlReport:
        self.reads += 1
        if self.report is None:
            raise NvmlUnavailable("NVML Shared Library Not Found")
        return self.report

    def set_reading(
        self,
        uuid: str,
        *,
        utilization_ratio: float = 0.0,
        memory_used_bytes: int = 0,
        temperature_celsius: float = 30.0,
        power_watts: float | None = 60.0,
    ) -> None:
        """What the device ``uuid`` answers from now on (and it no longer fails)."""
        device = self._device(uuid)
        self.failures.pop(uuid, None)
        self.readings[uuid] = GpuReading(
            uuid,
            device.name,
            utilization_ratio,
            memory_used_bytes,
            device.memory_mib * 2**20,
            temperature_celsius,
            power_watts,
        )

    def fail(self, uuid: str, reason: str = "GPU is lost") -> None:
        """The device ``uuid`` cannot be read from now on, with NVML's ``reason``."""
        self._device(uuid)
        self.failures[uuid] = reason

    def sample(self) -> tuple[GpuReading | GpuReadFailure, ...]:
        self.samples += 1
        report = self.read()
        self.reads -= 1  # a sample is not a discovery
        answers: list[GpuReading | GpuReadFailure] = []
        for device in report.devices:
            if device.uuid in self.failures:
                answers.append(GpuReadFailure(device.uuid, self.failures[device.uuid]))
                continue
            idle = GpuReading(
                device.uuid, device.name, 0.0, 0, device.memory_mib * 2**20, 30.0, 60.0
            )
            answers.append(self.readings.get(device.uuid, idle))
        return tuple(answers)

    def _device(self, uuid: str) -> NvmlDevice:
        devices = self.report.devices if self.report else ()
        for device in devices:
            if device.uuid == uuid:
                return device
        raise KeyError(f"FakeNvml has no device {uuid}")


def _minor_number(nvml: Any, handle: Any) -> int | None:
    try:
        return int(nvml.nvmlDeviceGetMinorNumber(handle))
    except (nvml.NVMLError, AttributeError):
        return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sample_one(nvml: Any, index: int) -> GpuReading | GpuReadFailure:
    key = f"index {index}"
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        key = _text(nvml.nvmlDeviceGetUUID(handle))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        reading = GpuReading(
            uuid=key,
            name=_text(nvml.nvmlDeviceGetName(handle)),
            utilization_ratio=int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100,
            memory_used_bytes=int(memory.used),
            memory_total_bytes=int(memory.total),
            temperature_celsius=float(
                nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            ),
            power_watts=None,
        )
    except nvml.NVMLError as exc:
        return GpuReadFailure(key, str(exc) or type(exc).__name__)
    try:
        milliwatts = int(nvml.nvmlDeviceGetPowerUsage(handle))
    except nvml.NVMLError:
        return reading
    return dataclasses.replace(reading, power_watts=milliwatts / 1000)


def _cuda_version(nvml: Any) -> str | None:
    """NVML answers the driver's CUDA version as an integer, 12040 for 12.4."""
    getter = getattr(nvml, "nvmlSystemGetCudaDriverVersion", None)
    if getter is None:
        return None
    try:
        version = int(getter())
    except nvml.NVMLError:
        return None
    return f"{version // 1000}.{version % 1000 // 10}"
