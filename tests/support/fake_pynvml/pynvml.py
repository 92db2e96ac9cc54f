"""A stand-in for nvidia-ml-py's ``pynvml``: put this folder first on a test
process's ``PYTHONPATH`` and ``moorage serve`` finds the GPUs listed in the JSON
file ``$FAKE_PYNVML_GPUS`` names. The file is read at every call, so a test
changes what the next sample sees by rewriting it. Without the variable, no
driver answers.

Each GPU is an object: ``uuid``, ``name``, ``memory_total`` and ``memory_used``
(bytes), ``utilization`` (percent), ``temperature`` (Celsius), ``power_mw``
(milliwatts; null: the GPU does not measure it) and ``broken`` (true: every call
on it after its UUID fails).
"""

# ruff: noqa: N802 - pynvml's own function names
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


def _gpus() -> list[dict[str, Any]]:
    path = os.environ.get("FAKE_PYNVML_GPUS")
    if not path:
        raise NVMLError("NVML Shared Library Not Found")
    gpus: list[dict[str, Any]] = json.loads(Path(path).read_text())
    return gpus


def _gpu(handle: int) -> dict[str, Any]:
    gpu = _gpus()[handle]
    if gpu.get("broken"):
        raise NVMLError("GPU is lost")
    return gpu


def nvmlInit() -> None:
    _gpus()


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(_gpus())


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetUUID(handle: int) -> str:
    return str(_gpus()[handle]["uuid"])


def nvmlDeviceGetName(handle: int) -> str:
    return str(_gpu(handle)["name"])


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    gpu = _gpu(handle)
    total = int(gpu["memory_total"])
    used = int(gpu.get("memory_used", 0))
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=int(_gpu(handle).get("utilization", 0)), memory=0)


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    assert sensor == NVML_TEMPERATURE_GPU
    return int(_gpu(handle).get("temperature", 30))


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    power = _gpu(handle).get("power_mw")
    if power is None:
        raise NVMLError("Not Supported")
    return int(power)


def nvmlSystemGetDriverVersion() -> str:
    return "550.54.15"


def nvmlSystemGetCudaDriverVersion() -> int:
    return 12040
