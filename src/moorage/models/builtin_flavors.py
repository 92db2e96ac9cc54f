"""The flavors moorage offers when the operator has written no flavor file.

There is always a ``cpu`` flavor, so moorage works on any machine; each GPU
model NVML reports on this host adds one flavor (``services/flavors.py`` merges
them in, see ``models/gpu_flavors.py``), free until the operator prices it in a
flavor file, since moorage cannot know what the operator charges.
"""

from __future__ import annotations

import os

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


def builtin_flavors() -> list[Flavor]:
    return [cpu_flavor()]
