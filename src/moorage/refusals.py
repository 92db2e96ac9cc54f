"""What moorage says when it refuses a request: the gateway and the API's services
take these errors from here, so one case has one code, one status and one message
wherever it is answered.

Each function returns an error of ``errors.py`` (its class holds the HTTP status);
the caller raises it, or the gateway answers with it. Messages say what to do
next and name the setting behind a limit, so an operator can change it.
"""

from __future__ import annotations

from moorage.errors import (
    BadGateway,
    BadRequest,
    ErrorCode,
    GatewayTimeout,
    HeadersTooLarge,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    UriTooLong,
)
from moorage.models.states import EndpointStatus
from moorage.models.words import count

# -- who is calling -----------------------------------------------------------------


def no_token() -> Unauthenticated:
    return Unauthenticated("send your moorage token as 'Authorization: Bearer <token>'")


def unknown_token() -> Unauthenticated:
    return Unauthenticated("this token is unknown or revoked; ask your admin for a new one")


def metrics_token_needed() -> Unauthenticated:
    return Unauthenticated("send the gateway's admin token to read /metrics")


def endpoint_not_found(service_id: str) -> NotFound:
    """Also for another user's endpoint: a caller never learns which ids exist. The id
    is quoted up to 64 characters: a message never grows with the input."""
    shown = service_id if len(service_id) <= 64 else service_id[:64] + "..."
    return NotFound(f"no endpoint {shown!r}; GET /v1/inference-service (`moorage ls`) lists yours")


# -- the request itself ---------------------------------------------------------------


def not_http(problem: str) -> BadRequest:
    return BadRequest(f"the request is not valid HTTP/1.1 ({problem}); check the client")


def url_too_long(max_bytes: int) -> UriTooLong:
    return UriTooLong(
        f"the request line is longer than {max_bytes} bytes "
        "(MOORAGE_GATEWAY_MAX_URL_BYTES); send large inputs in the body"
    )


def header_too_large(max_bytes: int) -> HeadersTooLarge:
    return HeadersTooLarge(
        f"a request header is longer than {max_bytes} bytes "
        "(MOORAGE_GATEWAY_MAX_HEADER_BYTES); send large inputs in the body",
        code=ErrorCode.HEADER_TOO_LARGE,
    )


def headers_too_large(max_bytes: int) -> HeadersTooLarge:
    return HeadersTooLarge(
        f"the request headers together are longer than {max_bytes} bytes "
        "(MOORAGE_GATEWAY_MAX_HEAD_BYTES); send fewer or smaller headers"
    )


def body_too_large(max_bytes: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than {max_bytes} bytes ({setting}); send a smaller one"
    )


def header_timeout(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request headers did not arrive within {timeout_s:g} s "
        "(MOORAGE_GATEWAY_HEADER_TIMEOUT_S)"
    )


def body_timeout(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request body paused for more than {timeout_s:g} s "
        "(MOORAGE_GATEWAY_BODY_TIMEOUT_S); send it without long gaps",
        code=ErrorCode.BODY_TIMEOUT,
    )


def api_body_deadline(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(
        f"the API request body did not arrive whole within {timeout_s:g} s "
        "(MOORAGE_API_BODY_TIMEOUT_S); send it at once",
        code=ErrorCode.BODY_TIMEOUT,
    )


def too_many_connections(capacity: int) -> Unavailable:
    return Unavailable(
        f"the gateway holds {capacity} client connections, the most it may "
        "(MOORAGE_GATEWAY_MAX_CONNECTIONS); retry shortly",
        code=ErrorCode.TOO_MANY_CONNECTIONS,
        retry_after_s=1,
    )


def too_many_connections_from(capacity: int) -> Unavailable:
    return Unavailable(
        f"your address holds {capacity} connections to the gateway, the most one may "
        "(MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT); reuse or close some",
        code=ErrorCode.TOO_MANY_CONNECTIONS,
        retry_after_s=1,
    )


# -- the endpoint's replicas ----------------------------------------------------------


def endpoint_stopped(service_id: str) -> Unavailable:
    """No ``Retry-After``: a stopped endpoint does not come back by itself, so a client
    told to retry would retry for ever (``no_ready_replica`` below keeps one)."""
    return Unavailable(
        f"endpoint {service_id} is stopped; "
        f"POST /v1/inference-service/{service_id}/start to run it again",
        code=ErrorCode.NO_READY_REPLICA,
    )


def no_ready_replica(service_id: str) -> Unavailable:
    return Unavailable(
        f"endpoint {service_id} has no ready replica yet; retry when "
        f"GET /v1/inference-service/{service_id} says {EndpointStatus.AVAILABLE.value!r}",
        code=ErrorCode.NO_READY_REPLICA,
        retry_after_s=2,
    )


def overloaded(service_id: str, retry_after_s: int) -> TooManyRequests:
    return TooManyRequests(
        f"every replica of endpoint {service_id} is busy and its queue is full; "
        f"retry in {retry_after_s} s or scale the endpoint up",
        retry_after_s=retry_after_s,
    )


def queue_timeout(service_id: str, timeout_s: float) -> Unavailable:
    return Unavailable(
        f"no replica of endpoint {service_id} became free within "
        f"{timeout_s:g} s; retry, or scale the endpoint up",
        code=ErrorCode.QUEUE_TIMEOUT,
        retry_after_s=1,
    )


def cannot_start(service_id: str, why: str) -> Unavailable:
    """No ``Retry-After``: it does not start by itself until its owner fixes it."""
    return Unavailable(
        f"endpoint {service_id} cannot start a replica: {why}; see "
        f"GET /v1/inference-service/{service_id} and its logs, fix deploy_metadata and PUT it",
        code=ErrorCode.CANNOT_START,
    )


def cold_start_queue_full(service_id: str, max_queue: int) -> TooManyRequests:
    return TooManyRequests(
        f"endpoint {service_id} is starting a replica and already holds "
        f"{count(max_queue, 'request')} until it is ready (its gateway_metadata.max_queue); "
        "retry in a few seconds, or raise max_queue",
        retry_after_s=2,
    )


def cold_start_timeout(service_id: str, timeout_s: float) -> Unavailable:
    return Unavailable(
        f"endpoint {service_id} is starting a replica and none was ready within "
        f"{timeout_s:g} s (its gateway_metadata.cold_start_timeout_s, or this request's "
        f"X-Moorage-Cold-Start-Timeout); retry, send a longer X-Moorage-Cold-Start-Timeout, "
        f"or see GET /v1/inference-service/{service_id} for what the replica is doing",
        code=ErrorCode.COLD_START_TIMEOUT,
        retry_after_s=5,
    )


def replica_unreachable(service_id: str, reason: str) -> BadGateway:
    return BadGateway(
        f"no replica of endpoint {service_id} answered ({reason}); retry the call, "
        f"and check GET /v1/inference-service/{service_id}/logs if it persists"
    )


def bad_response(sender: str, what: str) -> BadGateway:
    return BadGateway(
        f"{sender} sent a response the gateway refuses ({what}); fix the app's HTTP server",
        code=ErrorCode.BAD_REPLICA_RESPONSE,
    )


def replica_timeout(which: str) -> GatewayTimeout:
    """``which`` is ``idle`` or ``request``, the endpoint's timeout that ran out."""
    return GatewayTimeout(
        f"the replica did not answer within the endpoint's {which} timeout; raise "
        f"gateway_metadata.{which}_timeout_s if the model needs longer",
        code=f"{which}_timeout",
    )


def insufficient_capacity(
    flavor: str,
    wanted: int,
    free: int,
    capacity: int,
    field: str = "resource_metadata.target_instance_number",
) -> Unavailable:
    """The flavor could hold ``wanted`` replicas, but not while other endpoints hold
    it: a shortage the operator owns, which passes, so 503 (not a 4xx)."""
    return Unavailable(
        f"{field}: {count(wanted, 'replica')} of flavor "
        f"{flavor} {'does' if wanted == 1 else 'do'} not fit now, {free} of its {capacity} "
        f"{'is' if free == 1 else 'are'} free; retry later, ask for fewer, "
        "or stop or scale down another endpoint",
        code=ErrorCode.INSUFFICIENT_CAPACITY,
    )


# -- the control plane ------------------------------------------------------------------


def api_unreachable(reason: str) -> BadGateway:
    return BadGateway(
        f"the control plane did not answer ({reason}); check the moorage server's log",
        code=ErrorCode.API_UNREACHABLE,
    )


def inference_elsewhere() -> NotFound:
    return NotFound(
        "this is moorage api: it serves the control API only; inference requests go to a "
        "moorage gateway (/inference-api/... at the address the operator gives)"
    )


def api_elsewhere() -> NotFound:
    return NotFound(
        "this gateway serves /inference-api/v1/inference_service/{service_id}/...; "
        "the API is on the control plane"
    )
