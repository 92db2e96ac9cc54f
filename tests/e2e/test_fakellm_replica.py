"""The fake LLM server as a moorage replica: an endpoint whose command is
``fake_llm_command(...)`` becomes available on a real ``moorage serve``, and the
``openai`` package, pointed at the gateway with the owner's moorage token, streams a
chat completion through it token by token, and a client that leaves mid-stream frees
the replica's running slot, on the process and docker runtimes."""

from __future__ import annotations

import time

import openai
import pytest

from moorage.fakellm.command import fake_llm_command
from tests.support.metrics import metric
from tests.support.server import ApiClient, MoorageServer, wait_for

# What this module checks is the replica and the gateway's streaming, not the store.
STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]


def running(client: ApiClient, service_id: str) -> float:
    text = client.gateway(service_id, "metrics").text
    return metric(text, "vllm:num_requests_running", model_name="fake-model")


def test_the_openai_client_streams_a_chat_completion_through_the_gateway(
    server: MoorageServer, alice: ApiClient
) -> None:
    command = fake_llm_command(model="fake-model", max_num_seqs=2, itl_ms=100, itl_load_factor=0)
    created = alice.create(
        name="fake-llm",
        deploy_metadata={"command": command, "readiness_probe": {"path": "/health"}},
    )
    service_id = created["service_id"]
    try:
        alice.wait_status(service_id, "available", timeout=120)
        base_url = f"{server.url}/inference-api/v1/inference_service/{service_id}/v1"
        client = openai.OpenAI(base_url=base_url, api_key=alice.token, max_retries=0)
        assert [model.id for model in client.models.list()] == ["fake-model"]

        arrivals: list[tuple[float, str]] = []
        usage = None
        stream = client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "Say something."}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
            if chunk.usage is not None:
                usage = chunk.usage
        text = "".join(piece for _, piece in arrivals)
        assert text == "the model says hello from a fake server"
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (4, 8)
        # Tokens 100 ms apart arrive as they are made, not all at the end.
        assert arrivals[-1][0] - arrivals[0][0] > 0.5, arrivals

        # A token moorage does not know is refused by the gateway, before the replica.
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="mrg_not_a_token", max_retries=0).models.list()

        metrics = alice.gateway(service_id, "metrics")
        assert metrics.status_code == 200
        assert metric(metrics.text, "vllm:generation_tokens_total", model_name="fake-model") == 8

        # A client that leaves mid-stream frees the replica's slot through the gateway.
        leaving = client.completions.create(
            model="fake-model", prompt="a long answer", max_tokens=1000, stream=True
        )
        for _ in zip(range(2), leaving, strict=False):
            pass
        assert running(alice, service_id) == 1
        leaving.close()
        wait_for(lambda: running(alice, service_id) == 0, timeout=10, what="the slot freed")
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")
