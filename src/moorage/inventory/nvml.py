"""NVML behind one small class: what the driver reports of this host's GPUs.

``Nvml.read`` is the only call into ``pynvml`` (nvidia-ml-py) in moorage; tests
and hosts without a driver use ``FakeNvml``, which answers a fixed report.
Both raise ``NvmlUnavailable`` when there is nothing to read, with the driver's
reason, so the caller can say why no GPU was found.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["FakeNvml", "Nvml", "NvmlDevice", "NvmlReader", "NvmlReport", "NvmlUnavailable"]

# More devices than any host holds means a broken driver answer, not GPUs.
MAX_DEVICES = 64


@dataclass(frozen=True)
class NvmlDevice:
    index: int
    uuid: str
    name: str
    memory_mib: int


@dataclass(frozen=True)
class NvmlReport:
    driver_version: str
    # "12.4", from the driver's CUDA version; None when the driver does not say.
    cuda_version: str | None
    devices: tuple[NvmlDevice, ...]


class NvmlUnavailable(Exception):
    """No NVIDIA driver answers on this host (the message is the driver's reason)."""


class NvmlReader(Protocol):
    def read(self) -> NvmlReport: ...


class Nvml:
    """The real NVML. ``module`` stands in for ``pynvml`` in tests."""

    def __init__(self, module: Any | None = None) -> None:
        self._module = module

    def read(self) -> NvmlReport:
        nvml = self._module
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a dependency
                raise NvmlUnavailable(f"nvidia-ml-py is not installed: {exc}") from exc
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
                    )
                )
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            cuda = _cuda_version(nvml)
        except nvml.NVMLError as exc:
            raise NvmlUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            nvml.nvmlShutdown()
        return NvmlReport(driver, cuda, tuple(devices))


class FakeNvml:
    """A host's NVML answer, fixed: ``None`` is a host with no NVIDIA driver."""

    def __init__(self, report: NvmlReport | None) -> None:
        self.report = report
        self.reads = 0

    def read(self) -> NvmlReport:
        self.reads += 1
        if self.report is None:
            raise NvmlUnavailable("NVML Shared Library Not Found")
        return self.report


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
