"""The gateway's Prometheus metrics; the same numbers an autoscaler reads.

Counters and histograms are updated once per request, with label children
cached per endpoint so the hot path does no label lookups. In-flight counts and
queue lengths are not duplicated into gauges: a collector reads them from the
dispatcher when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.gateway.dispatch import Dispatcher

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _DispatcherCollector(Collector):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        snapshot = self.dispatcher.snapshot()
        endpoint_in_flight = GaugeMetricFamily(
            "moorage_gateway_in_flight",
            "Requests in flight to an endpoint's replicas.",
            labels=["endpoint"],
        )
        replica_in_flight = GaugeMetricFamily(
            "moorage_gateway_replica_in_flight",
            "Requests in flight to one replica.",
            labels=["endpoint", "replica"],
        )
        queue_length = GaugeMetricFamily(
            "moorage_gateway_queue_length",
            "Requests waiting for a replica with room.",
            labels=["endpoint"],
        )
        for service_id, replicas in snapshot.in_flight.items():
            endpoint_in_flight.add_metric([service_id], sum(replicas.values()))
            for replica_id, count in replicas.items():
                replica_in_flight.add_metric([service_id, replica_id], count)
        for service_id, length in snapshot.queued.items():
            queue_length.add_metric([service_id], length)
        yield endpoint_in_flight
        yield replica_in_flight
        yield queue_length


class GatewayMetrics:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "moorage_gateway_requests",
            "Requests answered by replicas, by status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self._errors = Counter(
            "moorage_gateway_errors",
            "Requests the gateway answered itself (no replica, overloaded, unreachable...).",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self._retries = Counter(
            "moorage_gateway_retries",
            "Requests sent to another replica after one could not be reached.",
            ["endpoint"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "moorage_gateway_request_duration_seconds",
            "From the request's arrival to the end of the response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            "moorage_gateway_queue_wait_seconds",
            "Time a request waited for a replica with room.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DispatcherCollector(dispatcher))
        self._latency_by_endpoint: dict[str, Histogram] = {}
        self._wait_by_endpoint: dict[str, Histogram] = {}
        self._requests_by_code: dict[tuple[str, int], Counter] = {}

    def answered(self, service_id: str, status: int, seconds: float) -> None:
        counter = self._requests_by_code.get((service_id, status))
        if counter is None:
            counter = self._requests.labels(service_id, str(status))
            self._requests_by_code[(service_id, status)] = counter
        counter.inc()
        child = self._latency_by_endpoint.get(service_id)
        if child is None:
            child = self._latency_by_endpoint[service_id] = self._latency.labels(service_id)
        child.observe(seconds)

    def waited(self, service_id: str, seconds: float) -> None:
        child = self._wait_by_endpoint.get(service_id)
        if child is None:
            child = self._wait_by_endpoint[service_id] = self._queue_wait.labels(service_id)
        child.observe(seconds)

    def retried(self, service_id: str) -> None:
        self._retries.labels(service_id).inc()

    def refused(self, service_id: str, reason: str) -> None:
        self._errors.labels(service_id, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
