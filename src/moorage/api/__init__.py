"""The HTTP API: translates requests into service calls and results into JSON."""
