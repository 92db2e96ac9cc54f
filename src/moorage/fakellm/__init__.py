"""An OpenAI-compatible fake LLM server for tests and benchmarks: vLLM's API, metrics
and timing without a model (``server.py``, stdlib only), and the replica command that
runs it from its source (``command.py``)."""
