"""The flavors moorage offers when the operator has written no flavor file.

There is always a ``cpu`` flavor, so moorage works on any machine; each GPU
model NVML reports on this host adds one flavor whose capacity is the number of
such GPUs. Prices of detected GPUs are zero until the operator sets them in a
flavor file, since moorage cannot know what the operator charges.
"""

from __future__ import annotations

import os
from collections import Counter

from moorage.models.flavors import Flavor, stable_flavor_id

CPU_FLAVOR_KEY = "local_cpu"


def cpu_flavor() -> Flavor:
    return Flavor(
        flavor_id=stable_flavor_id("local", CPU_FLAVOR_KEY, "local"),
        display_name="CPU",
        cluster_id="local",
        cluster_flavor_id=CPU_FLAVOR_KEY,
        capacity=max(8, 2 * (os.cpu_count() or 1)),
        node_max_gpu=0,
        meta_info={"region": "local", "cpu_count": str(os.cpu_count() or 1)},
        prices={"usd": 0.05, "cny": 0.36, "nmt": 0.0245},
        vram=None,
    )


def detected_gpu_flavors() -> list[Flavor]:
    """One flavor per GPU model on this host, or none when NVML is absent."""
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        names: Counter[str] = Counter()
        memory: dict[str, int] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            raw_name = pynvml.nvmlDeviceGetName(handle)
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            names[name] += 1
            memory[name] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver_text = driver.decode() if isinstance(driver, bytes) else str(driver)
    finally:
        pynvml.nvmlShutdown()
    flavors = []
    for name, count in sorted(names.items()):
        key = "local_" + name.replace(" ", "_")
        flavors.append(
            Flavor(
                flavor_id=stable_flavor_id("local", key, "local"),
                display_name=name.replace(" ", "_"),
                cluster_id="local",
                cluster_flavor_id=key,
                capacity=count,
                node_max_gpu=count,
                meta_info={"region": "local", "driver": driver_text},
                prices={},
                vram=f"{round(memory[name] / 2**30)}GB",
            )
        )
    return flavors


def builtin_flavors() -> list[Flavor]:
    return [cpu_flavor(), *detected_gpu_flavors()]
