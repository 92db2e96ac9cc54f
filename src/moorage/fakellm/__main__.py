"""``python -m moorage.fakellm --port 8000``: the fake LLM server, for benchmarks."""

from moorage.fakellm.server import main

main()
