"""``Client``: the API as typed methods, on ``httpx``.

Each method runs one ``calls`` description and answers the server's own response
model (``moorage.api.schemas``), so a program sees exactly what the OpenAPI document
promises. Pages, events and logs come as iterators; ``wait_until_available`` polls
with a deadline and fails early, with the server's reason, when waiting cannot help.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from moorage.api import account_schemas as accounts
from moorage.api import schemas
from moorage.models.requests import CreateEndpointRequest, UpdateEndpointRequest
from moorage.sdk import calls
from moorage.sdk.answers import (
    NOT_AN_ID,
    Bounds,
    Lines,
    headers,
    more_pages,
    named,
    read,
    timed_out,
    unreachable,
)
from moorage.sdk.errors import ApiError, WaitFailed, WaitTimeout
from moorage.sdk.target import Target, resolve_target
from moorage.sdk.waiting import describe, progress

T = TypeVar("T")
Body = Mapping[str, Any]


class Client:
    """A moorage server, called with one token.

    ``url`` and ``token`` default to ``MOORAGE_URL`` and ``MOORAGE_TOKEN``, then the
    file ``moorage login`` writes (``moorage.sdk.target``). Use it as a context
    manager, or call ``close()``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        answer_within_s: float = 120.0,
        trust_env: bool = False,
    ) -> None:
        self.target: Target = resolve_target(url, token)
        # A whole answer must arrive within this (``timeout`` bounds each wait for data).
        self.answer_within_s = answer_within_s
        self._http = httpx.Client(base_url=self.target.url, timeout=timeout, trust_env=trust_env)

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def token(self) -> str:
        return self.target.token

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def run(self, call: calls.Call[T]) -> T:
        """Makes one call; what every method does. The whole exchange, from sending
        the request to the answer's last byte, must end within ``answer_within_s``: a
        server that trickles its headers or body cannot hold the caller. It runs in a
        daemon thread the caller stops waiting for at the deadline (the thread ends
        with the connection, or with the process)."""
        bounds = Bounds(self.target, self.answer_within_s)
        outcome: queue.Queue[tuple[int, bytes] | BaseException] = queue.Queue(maxsize=1)

        def exchange() -> None:
            try:
                with self._http.stream(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=headers(self.target, call),
                ) as response:
                    for chunk in response.iter_bytes():
                        bounds.add(chunk)
                    outcome.put((response.status_code, bytes(bounds.body)))
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                outcome.put(unreachable(self.target, exc))
            except BaseException as exc:
                outcome.put(exc)

        threading.Thread(target=exchange, name="moorage-sdk-call", daemon=True).start()
        try:
            got = outcome.get(timeout=self.answer_within_s)
        except queue.Empty:
            raise bounds.too_slow() from None
        if isinstance(got, BaseException):
            raise got
        status, body = got
        return read(call, status, body, self.target)

    # -- server ---------------------------------------------------------------------------

    def health(self) -> schemas.Health:
        return self.run(calls.health())

    def metrics(self) -> str:
        """Prometheus text (admin token)."""
        return self.run(calls.metrics())

    def list_flavors(self) -> list[schemas.Flavor]:
        return self.run(calls.list_flavors()).flavor_list

    # -- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, body: Body | CreateEndpointRequest) -> schemas.Endpoint:
        return self.run(calls.create_endpoint(body))

    def list_endpoints(self, page: int = 1, page_size: int = 20) -> schemas.EndpointPage:
        return self.run(calls.list_endpoints(page, page_size))

    def iter_endpoints(self, page_size: int = 100) -> Iterator[schemas.Endpoint]:
        page = 1
        while True:
            got = self.list_endpoints(page, page_size)
            yield from got.service_list
            if not more_pages(page, page_size, len(got.service_list), got.total):
                return
            page += 1

    def get_endpoint(self, service_id: str) -> schemas.Endpoint:
        return self.run(calls.get_endpoint(service_id))

    def find_endpoint(self, name_or_id: str) -> schemas.Endpoint:
        """The caller's endpoint with this id, else the one with this exact name."""
        try:
            return self.get_endpoint(name_or_id)
        except ApiError as error:
            if error.status not in NOT_AN_ID:
                raise
        return named(self.iter_endpoints(), name_or_id)

    def update_endpoint(
        self, service_id: str, changes: Body | UpdateEndpointRequest
    ) -> schemas.Endpoint:
        return self.run(calls.update_endpoint(service_id, changes))

    def scale_endpoint(self, service_id: str, replicas: int) -> schemas.Endpoint:
        return self.run(calls.scale_endpoint(service_id, replicas))

    def stop_endpoint(self, service_id: str) -> schemas.Endpoint:
        return self.run(calls.stop_endpoint(service_id))

    def start_endpoint(self, service_id: str) -> schemas.Endpoint:
        return self.run(calls.start_endpoint(service_id))

    def delete_endpoint(self, service_id: str) -> schemas.Endpoint:
        return self.run(calls.delete_endpoint(service_id))

    def list_events(self, service_id: str, page: int = 1, page_size: int = 20) -> schemas.EventPage:
        return self.run(calls.list_events(service_id, page, page_size))

    def iter_events(self, service_id: str, page_size: int = 100) -> Iterator[schemas.EndpointEvent]:
        page = 1
        while True:
            got = self.list_events(service_id, page, page_size)
            yield from got.event_list
            if not more_pages(page, page_size, len(got.event_list), got.total):
                return
            page += 1

    def traffic(self, service_id: str) -> schemas.EndpointTraffic:
        """Requests, responses, errors and latency seconds counted by the gateways since
        each started (read twice and take differences for rates)."""
        return self.run(calls.traffic(service_id))

    def logs(
        self,
        service_id: str,
        *,
        replica: str | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> Iterator[str]:
        """The replicas' output, a line at a time (without its line end); with
        ``follow`` it goes on until the endpoint is deleted or the caller stops."""
        call = calls.logs(service_id, replica=replica, tail=tail, follow=follow)
        try:
            with self._http.stream(
                call.method,
                call.path,
                params=call.params,
                headers=headers(self.target, call),
                timeout=None if follow else self._http.timeout,
            ) as response:
                if response.status_code >= 400:
                    refused = Bounds(self.target, self.answer_within_s)
                    for chunk in response.iter_bytes():
                        refused.add(chunk)
                    read(call, response.status_code, bytes(refused.body), self.target)
                lines = Lines()
                # Without follow, the log is one answer, bounded as every other is.
                bounded = None if follow else Bounds(self.target, self.answer_within_s)
                for text in response.iter_text():
                    if bounded is not None:
                        bounded.count(len(text))
                    yield from lines.feed(text)
                yield from lines.end()
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise unreachable(self.target, exc) from exc

    def wait_until_available(
        self,
        service_id: str,
        *,
        timeout: float = 900.0,
        poll_s: float = 1.0,
        revision: int | None = None,
        on_progress: Callable[[schemas.Endpoint], None] | None = None,
    ) -> schemas.Endpoint:
        """Polls until the endpoint serves with every replica it wants, of ``revision``
        (a PUT's answer) or its current one. Raises ``WaitFailed`` when waiting cannot
        help (a replica cannot run, the revision was rolled back, the endpoint was
        stopped or deleted), ``WaitTimeout`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            endpoint = self.get_endpoint(service_id)
            if on_progress is not None:
                on_progress(endpoint)
            seen = progress(endpoint, revision)
            if seen.failure is not None:
                raise WaitFailed(seen.failure, endpoint)
            if seen.done:
                return endpoint
            if time.monotonic() >= deadline:
                raise WaitTimeout(timed_out(endpoint, timeout, describe(seen)), endpoint)
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))

    # -- usage, quotas, budgets ----------------------------------------------------------------

    def usage(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        group_by: str = "endpoint",
        user_id: str | None = None,
    ) -> accounts.UsageOut:
        answer: accounts.UsageOut = self.run(
            calls.usage(from_=from_, to=to, group_by=group_by, user_id=user_id)
        )
        return answer

    def usage_csv(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        group_by: str = "endpoint",
        user_id: str | None = None,
    ) -> str:
        text: str = self.run(
            calls.usage(from_=from_, to=to, group_by=group_by, user_id=user_id, csv=True)
        )
        return text

    def quota(self) -> accounts.QuotaOut:
        return self.run(calls.quota())

    def budgets(self) -> accounts.BudgetsOut:
        return self.run(calls.budgets())

    # -- admin ----------------------------------------------------------------------------------

    def create_user(self, name: str) -> schemas.User:
        return self.run(calls.create_user(name))

    def list_users(self) -> list[schemas.User]:
        return self.run(calls.list_users()).user_list

    def create_token(
        self, *, user_id: str | None = None, user_name: str | None = None, name: str | None = None
    ) -> schemas.IssuedToken:
        return self.run(calls.create_token(user_id=user_id, user_name=user_name, name=name))

    def list_tokens(self) -> list[schemas.Token]:
        return self.run(calls.list_tokens()).token_list

    def revoke_token(self, token_id: str) -> schemas.Token:
        return self.run(calls.revoke_token(token_id))

    def user_quota(self, user_id: str) -> accounts.QuotaOut:
        return self.run(calls.user_quota(user_id))

    def set_user_quota(self, user_id: str, changes: Body) -> accounts.QuotaOut:
        return self.run(calls.set_user_quota(user_id, changes))

    def user_budgets(self, user_id: str) -> accounts.BudgetsOut:
        return self.run(calls.user_budgets(user_id))

    def set_budget(
        self,
        user_id: str,
        currency: str,
        *,
        limit: str | int,
        warning: str | int | None = None,
        period: str | None = None,
    ) -> accounts.BudgetOut:
        return self.run(
            calls.set_budget(user_id, currency, limit=limit, warning=warning, period=period)
        )

    def delete_budget(self, user_id: str, currency: str) -> accounts.BudgetsOut:
        return self.run(calls.delete_budget(user_id, currency))

    def route_table(self, version: str | None = None, wait: float = 0) -> schemas.RouteTable:
        return self.run(calls.route_table(version, wait))

    # -- secrets and registry credentials -------------------------------------------------------

    def put_secret(self, name: str, value: str) -> accounts.SecretOut:
        return self.run(calls.put_secret(name, value))

    def list_secrets(self) -> list[accounts.SecretOut]:
        return self.run(calls.list_secrets()).secret_list

    def delete_secret(self, name: str) -> accounts.SecretOut:
        return self.run(calls.delete_secret(name))

    def put_registry_credential(
        self, registry: str, username: str, password: str
    ) -> accounts.RegistryCredentialOut:
        return self.run(calls.put_registry_credential(registry, username, password))

    def list_registry_credentials(self) -> list[accounts.RegistryCredentialOut]:
        return self.run(calls.list_registry_credentials()).registry_credential_list

    def delete_registry_credential(self, registry: str) -> accounts.RegistryCredentialOut:
        return self.run(calls.delete_registry_credential(registry))
