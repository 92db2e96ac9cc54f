"""The Python SDK against a real ``moorage serve``: every method, as a user calls it.

``moorage.Client`` and ``moorage.AsyncClient`` with a user's token and the admin's:
deploy and wait, pages and iterators, events and logs, scale and wait again, stop,
start and delete; the server's refusals as typed errors with its code and message;
waiting that fails early with the server's reason; the admin's accounts, quotas,
budgets, secrets and route table.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from moorage import ApiError, AsyncClient, Client, CreateEndpointRequest, WaitFailed, WaitTimeout
from moorage.fakellm.command import fake_llm_command
from moorage.sdk.config import write_config
from tests.support.server import FLASK_COMMAND, ApiClient, MoorageServer, endpoint_body

STORES = ["sqlite"]
MARKER = "sdk-marker-printed-at-start"


@pytest.fixture(scope="module")
def carol(server: MoorageServer, admin: ApiClient) -> Iterator[Client]:
    with Client(server.url, token=admin.token) as root:
        user = root.create_user("carol")
        token = root.create_token(user_id=user.user_id, name="sdk").token
    with Client(server.url, token=token) as client:
        yield client


def body(client: Client, name: str, command: str | None = None) -> dict[str, Any]:
    flavor = client.list_flavors()[0].flavor_id
    command = command or f"echo {MARKER} && {FLASK_COMMAND}"
    return endpoint_body(flavor, name=name, deploy_metadata={"command": command})


def parked(client: Client, name: str) -> str:
    """An endpoint made and stopped at once: listed, running nothing."""
    created = client.create_endpoint(body(client, name))
    return client.stop_endpoint(created.service_id).service_id


def test_deploy_wait_scale_and_delete(carol: Client, server: MoorageServer) -> None:
    created = carol.create_endpoint(body(carol, "sdk-web"))
    assert created.name == "sdk-web"
    seen: list[str] = []
    ready = carol.wait_until_available(
        created.service_id, timeout=120, poll_s=0.3, on_progress=lambda e: seen.append(e.status)
    )
    assert ready.status == "available"
    assert ready.endpoint_metadata.ready_replicas == 1
    assert seen
    assert seen[-1] == "available"

    assert carol.find_endpoint("sdk-web").service_id == created.service_id
    assert carol.find_endpoint(created.service_id).name == "sdk-web"

    scaled = carol.scale_endpoint(created.service_id, 2)
    assert scaled.resource_metadata.target_instance_number == 2
    two = carol.wait_until_available(created.service_id, timeout=120, poll_s=0.3)
    assert two.endpoint_metadata.ready_replicas == 2

    before = carol.traffic(created.service_id)
    url = f"{two.endpoint_metadata.endpoint_url}/"
    for _ in range(3):
        answer = httpx.get(url, headers={"Authorization": f"Bearer {carol.token}"}, timeout=30)
        assert answer.status_code == 200
    after = carol.traffic(created.service_id)
    assert after.requests_total - before.requests_total == 3
    assert after.responses_total - before.responses_total == 3
    assert after.latency_seconds_total > before.latency_seconds_total

    lines = list(carol.logs(created.service_id, tail=50))
    assert any(MARKER in line for line in lines)
    events = list(carol.iter_events(created.service_id, page_size=2))
    kinds = [event.kind for event in events]
    # A sandboxed replica's socket is named without the host's folders.
    shown = two.model_dump_json() + "".join(event.message for event in events)
    assert str(server.home) not in shown
    assert "created" in kinds
    assert "scaled" in kinds
    assert "ready" in kinds

    stopped = carol.stop_endpoint(created.service_id)
    assert stopped.status in {"stopped", "initializing"}
    started = carol.start_endpoint(created.service_id)
    assert carol.wait_until_available(started.service_id, timeout=120, poll_s=0.3)

    deleted = carol.delete_endpoint(created.service_id)
    assert deleted.is_deleted
    with pytest.raises(ApiError) as gone:
        carol.get_endpoint(created.service_id)
    assert gone.value.status == 404
    assert gone.value.code == "not_found"


def test_pages_come_as_iterators(carol: Client) -> None:
    ids = {parked(carol, f"sdk-page-{n}") for n in range(3)}
    try:
        page = carol.list_endpoints(page=1, page_size=2)
        assert len(page.service_list) == 2
        assert page.total >= 3
        listed = {e.service_id for e in carol.iter_endpoints(page_size=1)}
        assert ids <= listed
    finally:
        for service_id in ids:
            carol.delete_endpoint(service_id)


def test_a_typed_request_is_sent_as_the_server_reads_it(carol: Client) -> None:
    typed = CreateEndpointRequest.model_validate(body(carol, "sdk-typed"))
    created = carol.create_endpoint(typed)
    try:
        assert created.name == "sdk-typed"
        assert created.deploy_metadata.command is not None
        assert MARKER in created.deploy_metadata.command
        changed = carol.update_endpoint(created.service_id, {"description": "changed"})
        assert changed.description == "changed"
    finally:
        carol.delete_endpoint(created.service_id)


def test_a_replica_that_cannot_run_fails_the_wait_with_the_servers_reason(carol: Client) -> None:
    created = carol.create_endpoint(body(carol, "sdk-crash", command="echo boom >&2; exit 3"))
    try:
        with pytest.raises(WaitFailed) as failed:
            carol.wait_until_available(created.service_id, timeout=120, poll_s=0.3)
        assert "cannot run" in failed.value.message
        assert "exit" in failed.value.message or "boom" in failed.value.message
        assert failed.value.endpoint.status == "unavailable"
    finally:
        carol.delete_endpoint(created.service_id)


def test_a_wait_that_runs_out_says_so(carol: Client) -> None:
    slow = f"sleep 30 && {FLASK_COMMAND}"
    created = carol.create_endpoint(body(carol, "sdk-slow", command=slow))
    try:
        with pytest.raises(WaitTimeout) as late:
            carol.wait_until_available(created.service_id, timeout=1.5, poll_s=0.3)
        assert "not available after 1.5 s" in late.value.message
        assert late.value.endpoint.status == "initializing"
    finally:
        carol.delete_endpoint(created.service_id)


def test_refusals_carry_the_servers_code_and_message(
    server: MoorageServer, carol: Client, admin: ApiClient
) -> None:
    bad = body(carol, "sdk-bad")
    bad["resource_metadata"]["target_instance_number"] = -1
    with pytest.raises(ApiError) as invalid:
        carol.create_endpoint(bad)
    assert invalid.value.status == 400
    assert invalid.value.code == "invalid_field"
    assert "target_instance_number" in invalid.value.message
    assert str(invalid.value) == invalid.value.message
    with pytest.raises(ApiError) as malformed:
        carol.create_endpoint({"name": "sdk-bad"})
    assert malformed.value.status == 422
    assert "resource_metadata" in malformed.value.message

    with pytest.raises(ApiError) as missing:
        carol.find_endpoint("no-such-endpoint")
    assert missing.value.status == 404
    assert "no-such-endpoint" in missing.value.message

    with Client(server.url, token="not-a-token") as stranger, pytest.raises(ApiError) as denied:
        stranger.list_endpoints()
    assert denied.value.status == 401

    with pytest.raises(ApiError) as not_admin:
        carol.list_users()
    assert not_admin.value.status == 403


def test_another_users_endpoint_is_not_found(
    server: MoorageServer, carol: Client, bob: ApiClient
) -> None:
    created = carol.get_endpoint(parked(carol, "sdk-private"))
    try:
        with Client(server.url, token=bob.token) as theirs:
            with pytest.raises(ApiError) as hidden:
                theirs.get_endpoint(created.service_id)
            assert hidden.value.status == 404
            with pytest.raises(ApiError):
                theirs.find_endpoint("sdk-private")
            with pytest.raises(ApiError) as no_delete:
                theirs.delete_endpoint(created.service_id)
            assert no_delete.value.status == 404
        assert carol.get_endpoint(created.service_id).is_deleted is False
    finally:
        carol.delete_endpoint(created.service_id)


def test_path_parameters_stay_one_segment(carol: Client) -> None:
    """An id holding ``/`` or ``..`` cannot reach another route."""
    with pytest.raises(ApiError) as odd:
        carol.get_endpoint("../flavor")
    assert odd.value.status == 404


def test_a_server_that_does_not_answer_says_where_it_was_looked_for() -> None:
    with Client("http://127.0.0.1:9", token="t") as nowhere, pytest.raises(ApiError) as error:
        nowhere.list_flavors()
    assert error.value.status == 0
    assert error.value.code == "unreachable"
    assert "http://127.0.0.1:9" in error.value.message
    assert "--url" in error.value.message


def test_url_and_token_come_from_the_environment_then_the_config_file(
    server: MoorageServer, carol: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOORAGE_URL", raising=False)
    monkeypatch.delenv("MOORAGE_TOKEN", raising=False)
    monkeypatch.setenv("MOORAGE_CLIENT_CONFIG", str(tmp_path / "config.toml"))
    written = write_config(server.url, carol.token)
    assert os.stat(written).st_mode & 0o777 == 0o600
    with Client() as configured:
        assert configured.url == server.url
        assert configured.quota().user_id == carol.quota().user_id
    monkeypatch.setenv("MOORAGE_TOKEN", "env-token-wins")
    with Client() as from_env, pytest.raises(ApiError) as denied:
        from_env.quota()
    assert denied.value.status == 401


def test_usage_quota_and_budgets(carol: Client, server: MoorageServer, admin: ApiClient) -> None:
    report = carol.usage(group_by="day")
    assert report.group_by == "day"
    csv = carol.usage_csv(group_by="day")
    assert csv.splitlines()[0].startswith("key,name,is_deleted,instance_seconds")
    mine = carol.quota()
    assert mine.quota.endpoints >= 1
    assert carol.budgets().budgets == []
    with Client(server.url, token=admin.token) as root:
        budget = root.set_budget(mine.user_id, "usd", limit="100", warning="80")
        assert (budget.limit, budget.warning, budget.state) == ("100", "80", "ok")
        assert [b.currency for b in carol.budgets().budgets] == ["usd"]
        assert [b.currency for b in root.user_budgets(mine.user_id).budgets] == ["usd"]
        assert root.delete_budget(mine.user_id, "usd").budgets == []
        quota = root.set_user_quota(mine.user_id, {"endpoints": 7})
        assert quota.quota.endpoints == 7
        assert "endpoints" in quota.custom
        assert root.user_quota(mine.user_id).quota.endpoints == 7


def test_the_admins_accounts_tokens_and_routes(server: MoorageServer, admin: ApiClient) -> None:
    with Client(server.url, token=admin.token) as root:
        assert root.health().status == "ok"
        user = root.create_user("dave")
        assert user.name == "dave"
        assert user.user_id in {u.user_id for u in root.list_users()}
        issued = root.create_token(user_id=user.user_id, name="ci")
        assert issued.token
        assert issued.token_id in {t.token_id for t in root.list_tokens()}
        raw = admin.call("POST", "/v1/tokens", json={"user_id": user.user_id})
        assert raw.headers["Cache-Control"] == "no-store"  # the token is in it
        revoked = root.revoke_token(issued.token_id)
        assert revoked.token_id == issued.token_id
        with Client(server.url, token=issued.token) as dave, pytest.raises(ApiError) as gone:
            dave.quota()
        assert gone.value.status == 401
        assert root.route_table().version
        assert "moorage_" in root.metrics()


def test_secrets_and_registry_credentials(carol: Client) -> None:
    stored = carol.put_secret("HF_TOKEN", "hf_secret_value")
    assert stored.name == "HF_TOKEN"
    assert [s.name for s in carol.list_secrets()] == ["HF_TOKEN"]
    assert carol.delete_secret("HF_TOKEN").name == "HF_TOKEN"
    assert carol.list_secrets() == []
    login = carol.put_registry_credential("registry.example.com", "me", "pw")
    assert login.registry == "registry.example.com"
    assert [c.registry for c in carol.list_registry_credentials()] == ["registry.example.com"]
    assert carol.delete_registry_credential("registry.example.com").registry
    assert carol.list_registry_credentials() == []


def test_the_async_client_does_the_same(server: MoorageServer, carol: Client) -> None:
    async def deploy() -> tuple[str, int, list[str], list[str]]:
        async with AsyncClient(server.url, token=carol.token) as client:
            flavors = await client.list_flavors()
            created = await client.create_endpoint(
                endpoint_body(
                    flavors[0].flavor_id,
                    name="sdk-async",
                    deploy_metadata={"command": f"echo {MARKER} && {FLASK_COMMAND}"},
                )
            )
            ready = await client.wait_until_available(created.service_id, timeout=120, poll_s=0.3)
            names = [e.name async for e in client.iter_endpoints(page_size=1)]
            lines = [line async for line in client.logs(created.service_id, tail=20)]
            await client.delete_endpoint(created.service_id)
            with pytest.raises(ApiError) as gone:
                await client.get_endpoint(created.service_id)
            return ready.status, gone.value.status, names, lines

    status, gone, names, lines = asyncio.run(deploy())
    assert status == "available"
    assert gone == 404
    assert "sdk-async" in names
    assert any(MARKER in line for line in lines)


def test_the_openai_package_through_the_gateway_as_the_docs_show(carol: Client) -> None:
    """docs/sdk.md's example: the fake LLM server as the command, the model from
    /v1/models, a streamed chat completion through the gateway with the user's token."""
    flavor = carol.list_flavors()[0]
    created = carol.create_endpoint(
        {
            "name": "sdk-llm",
            "payment_type": "usd",
            "resource_metadata": {
                "flavor_id": flavor.flavor_id,
                "scale_type": "manual",
                "target_instance_number": 1,
            },
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "port": 8080,
                "gpu_num": 0,
                "command": fake_llm_command(),
            },
        }
    )
    try:
        endpoint = carol.wait_until_available(created.service_id, timeout=120, poll_s=0.3)
        llm = OpenAI(
            base_url=f"{endpoint.endpoint_metadata.endpoint_url}/v1",
            api_key=carol.token,
            max_retries=0,
        )
        model = llm.models.list().data[0].id
        assert model == "fake-llm"
        chunks = llm.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert text
    finally:
        carol.delete_endpoint(created.service_id)
