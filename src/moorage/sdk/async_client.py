"""``AsyncClient``: ``Client``'s methods for asyncio programs, on ``httpx.AsyncClient``.

The same ``calls`` descriptions and answers as ``client.py``; pages, events and logs
come as async iterators, and waiting sleeps without blocking the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
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


class AsyncClient:
    """A moorage server, called with one token, from asyncio.

    ``url`` and ``token`` default to ``MOORAGE_URL`` and ``MOORAGE_TOKEN``, then the
    file ``moorage login`` writes (``moorage.sdk.target``). Use it as an async
    context manager, or await ``aclose()``.
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
        self._http = httpx.AsyncClient(
            base_url=self.target.url, timeout=timeout, trust_env=trust_env
        )

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def token(self) -> str:
        return self.target.token

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, call: calls.Call[T]) -> T:
        """Makes one call; what every method does. The whole exchange, from sending
        the request to the answer's last byte, must end within ``answer_within_s``."""
        bounds = Bounds(self.target, self.answer_within_s)
        try:
            async with (
                asyncio.timeout(self.answer_within_s),
                self._http.stream(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=headers(self.target, call),
                ) as response,
            ):
                async for chunk in response.aiter_bytes():
                    bounds.add(chunk)
        except TimeoutError:
            raise bounds.too_slow() from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise unreachable(self.target, exc) from exc
        return read(call, response.status_code, bytes(bounds.body), self.target)

    # -- server ---------------------------------------------------------------------------

    async def health(self) -> schemas.Health:
        return await self.run(calls.health())

    async def metrics(self) -> str:
        """Prometheus text (admin token)."""
        return await self.run(calls.metrics())

    async def list_flavors(self) -> list[schemas.Flavor]:
        return (await self.run(calls.list_flavors())).flavor_list

    # -- endpoints --------------------------------------------------------------------------

    async def create_endpoint(self, body: Body | CreateEndpointRequest) -> schemas.Endpoint:
        return await self.run(calls.create_endpoint(body))

    async def list_endpoints(self, page: int = 1, page_size: int = 20) -> schemas.EndpointPage:
        return await self.run(calls.list_endpoints(page, page_size))

    async def iter_endpoints(self, page_size: int = 100) -> AsyncIterator[schemas.Endpoint]:
        page = 1
        while True:
            got = await self.list_endpoints(page, page_size)
            for endpoint in got.service_list:
                yield endpoint
            if not more_pages(page, page_size, len(got.service_list), got.total):
                return
            page += 1

    async def get_endpoint(self, service_id: str) -> schemas.Endpoint:
        return await self.run(calls.get_endpoint(service_id))

    async def find_endpoint(self, name_or_id: str) -> schemas.Endpoint:
        """The caller's endpoint with this id, else the one with this exact name."""
        try:
            return await self.get_endpoint(name_or_id)
        except ApiError as error:
            if error.status not in NOT_AN_ID:
                raise
        return named([e async for e in self.iter_endpoints()], name_or_id)

    async def update_endpoint(
        self, service_id: str, changes: Body | UpdateEndpointRequest
    ) -> schemas.Endpoint:
        return await self.run(calls.update_endpoint(service_id, changes))

    async def scale_endpoint(self, service_id: str, replicas: int) -> schemas.Endpoint:
        return await self.run(calls.scale_endpoint(service_id, replicas))

    async def stop_endpoint(self, service_id: str) -> schemas.Endpoint:
        return await self.run(calls.stop_endpoint(service_id))

    async def start_endpoint(self, service_id: str) -> schemas.Endpoint:
        return await self.run(calls.start_endpoint(service_id))

    async def delete_endpoint(self, service_id: str) -> schemas.Endpoint:
        return await self.run(calls.delete_endpoint(service_id))

    async def list_events(
        self, service_id: str, page: int = 1, page_size: int = 20
    ) -> schemas.EventPage:
        return await self.run(calls.list_events(service_id, page, page_size))

    async def iter_events(
        self, service_id: str, page_size: int = 100
    ) -> AsyncIterator[schemas.EndpointEvent]:
        page = 1
        while True:
            got = await self.list_events(service_id, page, page_size)
            for event in got.event_list:
                yield event
            if not more_pages(page, page_size, len(got.event_list), got.total):
                return
            page += 1

    async def traffic(self, service_id: str) -> schemas.EndpointTraffic:
        """Requests, responses, errors and latency seconds counted by the gateways since
        each started (read twice and take differences for rates)."""
        return await self.run(calls.traffic(service_id))

    async def logs(
        self,
        service_id: str,
        *,
        replica: str | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[str]:
        """The replicas' output, a line at a time (without its line end); with
        ``follow`` it goes on until the endpoint is deleted or the caller stops."""
        call = calls.logs(service_id, replica=replica, tail=tail, follow=follow)
        try:
            async with self._http.stream(
                call.method,
                call.path,
                params=call.params,
                headers=headers(self.target, call),
                timeout=None if follow else self._http.timeout,
            ) as response:
                if response.status_code >= 400:
                    refused = Bounds(self.target, self.answer_within_s)
                    async for chunk in response.aiter_bytes():
                        refused.add(chunk)
                    read(call, response.status_code, bytes(refused.body), self.target)
                lines = Lines()
                # Without follow, the log is one answer, bounded as every other is.
                bounded = None if follow else Bounds(self.target, self.answer_within_s)
                async for text in response.aiter_text():
                    if bounded is not None:
                        bounded.count(len(text))
                    for line in lines.feed(text):
                        yield line
                for line in lines.end():
                    yield line
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise unreachable(self.target, exc) from exc

    async def wait_until_available(
        self,
        service_id: str,
        *,
        timeout: float = 900.0,  # noqa: ASYNC109 (the same call as Client's)
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
            endpoint = await self.get_endpoint(service_id)
            if on_progress is not None:
                on_progress(endpoint)
            seen = progress(endpoint, revision)
            if seen.failure is not None:
                raise WaitFailed(seen.failure, endpoint)
            if seen.done:
                return endpoint
            if time.monotonic() >= deadline:
                raise WaitTimeout(timed_out(endpoint, timeout, describe(seen)), endpoint)
            await asyncio.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))

    # -- usage, quotas, budgets ----------------------------------------------------------------

    async def usage(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        group_by: str = "endpoint",
        user_id: str | None = None,
    ) -> accounts.UsageOut:
        answer: accounts.UsageOut = await self.run(
            calls.usage(from_=from_, to=to, group_by=group_by, user_id=user_id)
        )
        return answer

    async def usage_csv(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        group_by: str = "endpoint",
        user_id: str | None = None,
    ) -> str:
        text: str = await self.run(
            calls.usage(from_=from_, to=to, group_by=group_by, user_id=user_id, csv=True)
        )
        return text

    async def quota(self) -> accounts.QuotaOut:
        return await self.run(calls.quota())

    async def budgets(self) -> accounts.BudgetsOut:
        return await self.run(calls.budgets())

    # -- admin ----------------------------------------------------------------------------------

    async def create_user(self, name: str) -> schemas.User:
        return await self.run(calls.create_user(name))

    async def list_users(self) -> list[schemas.User]:
        return (await self.run(calls.list_users())).user_list

    async def create_token(
        self, *, user_id: str | None = None, user_name: str | None = None, name: str | None = None
    ) -> schemas.IssuedToken:
        return await self.run(calls.create_token(user_id=user_id, user_name=user_name, name=name))

    async def list_tokens(self) -> list[schemas.Token]:
        return (await self.run(calls.list_tokens())).token_list

    async def revoke_token(self, token_id: str) -> schemas.Token:
        return await self.run(calls.revoke_token(token_id))

    async def user_quota(self, user_id: str) -> accounts.QuotaOut:
        return await self.run(calls.user_quota(user_id))

    async def set_user_quota(self, user_id: str, changes: Body) -> accounts.QuotaOut:
        return await self.run(calls.set_user_quota(user_id, changes))

    async def user_budgets(self, user_id: str) -> accounts.BudgetsOut:
        return await self.run(calls.user_budgets(user_id))

    async def set_budget(
        self,
        user_id: str,
        currency: str,
        *,
        limit: str | int,
        warning: str | int | None = None,
        period: str | None = None,
    ) -> accounts.BudgetOut:
        return await self.run(
            calls.set_budget(user_id, currency, limit=limit, warning=warning, period=period)
        )

    async def delete_budget(self, user_id: str, currency: str) -> accounts.BudgetsOut:
        return await self.run(calls.delete_budget(user_id, currency))

    async def route_table(self, version: str | None = None, wait: float = 0) -> schemas.RouteTable:
        return await self.run(calls.route_table(version, wait))

    # -- secrets and registry credentials -------------------------------------------------------

    async def put_secret(self, name: str, value: str) -> accounts.SecretOut:
        return await self.run(calls.put_secret(name, value))

    async def list_secrets(self) -> list[accounts.SecretOut]:
        return (await self.run(calls.list_secrets())).secret_list

    async def delete_secret(self, name: str) -> accounts.SecretOut:
        return await self.run(calls.delete_secret(name))

    async def put_registry_credential(
        self, registry: str, username: str, password: str
    ) -> accounts.RegistryCredentialOut:
        return await self.run(calls.put_registry_credential(registry, username, password))

    async def list_registry_credentials(self) -> list[accounts.RegistryCredentialOut]:
        return (await self.run(calls.list_registry_credentials())).registry_credential_list

    async def delete_registry_credential(self, registry: str) -> accounts.RegistryCredentialOut:
        return await self.run(calls.delete_registry_credential(registry))
