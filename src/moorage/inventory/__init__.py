"""What hardware this host offers replicas: GPUs found through NVML (``nvml.py``,
``discovery.py``)."""
