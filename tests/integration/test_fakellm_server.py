"""The fake LLM server as a real process, called by the ``openai`` package as a client of
vLLM would call it: chat and completions, streamed or not, usage, the prefix cache's
effect on TTFT, the running batch and waiting queue on ``/metrics``, start-up time, bad
input, and a client that leaves mid-stream."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.metrics import metric
from tests.support.server import end_process, free_port, track, wait_for


class FakeLLM:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text

    def gauge(self, name: str) -> float:
        return metric(self.metrics(), name, model_name="fake-llm")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def fake_llm(tmp_path: Path, *flags: str, wait: bool = True) -> Iterator[FakeLLM]:
    """``python -m moorage.fakellm`` on a free port, stopped (SIGTERM) however the test ends."""
    port = free_port()
    log = tmp_path / f"fake-llm-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moorage.fakellm", "--port", str(port), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    track(process, signal.SIGTERM)
    try:
        if wait:

            def up() -> bool:
                assert process.poll() is None, log.read_text()
                return port_open(port)

            wait_for(up, timeout=30, interval=0.05, what="the fake LLM server to listen")
        yield FakeLLM(port, log)
    finally:
        end_process(process, signal.SIGTERM, timeout=10)
    assert process.returncode == 0, log.read_text()


def test_chat_and_completions_streamed_or_not(tmp_path: Path) -> None:
    with fake_llm(tmp_path, "--ttft-overhead-ms", "1", "--itl-ms", "1") as server:
        client = server.client()
        assert [model.id for model in client.models.list()] == ["fake-llm"]

        chat = client.chat.completions.create(
            model="fake-llm", messages=[{"role": "user", "content": "hello " * 40}], max_tokens=5
        )
        assert chat.object == "chat.completion"
        assert chat.choices[0].message.role == "assistant"
        assert chat.choices[0].message.content == "the model says hello from"
        assert chat.choices[0].finish_reason == "length"
        assert chat.usage is not None
        assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (60, 5)
        assert chat.usage.total_tokens == 65

        stream = client.chat.completions.create(
            model="fake-llm",
            messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "the model says hello"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-2].choices[0].finish_reason == "length"
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 4

        completion = client.completions.create(model="fake-llm", prompt="abcd" * 10)
        assert completion.object == "text_completion"
        assert completion.choices[0].finish_reason == "stop"  # the default 16 tokens
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 16

        pieces = list(
            client.completions.create(
                model="fake-llm", prompt=["a", "b"], max_tokens=3, stream=True
            )
        )
        assert "".join(piece.choices[0].text for piece in pieces) == "the model says"
        assert all(piece.usage is None for piece in pieces)  # usage only when asked for

        text_metrics = server.metrics()
        assert metric(text_metrics, "vllm:request_success_total", finished_reason="length") == 3
        assert metric(text_metrics, "vllm:generation_tokens_total") == 28
        assert metric(text_metrics, "vllm:time_to_first_token_seconds_count") == 4
        assert metric(text_metrics, "vllm:inter_token_latency_seconds_count") == 24
        assert httpx.get(server.url + "/health").status_code == 200
    assert server.log.read_text().count("\n") == 1  # one line at start, none per request


def _time_to_first_token(client: openai.OpenAI, prompt: str) -> tuple[float, int]:
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="fake-llm",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    first = None
    cached = -1
    for chunk in stream:
        if first is None:
            first = time.monotonic() - started
        if chunk.usage is not None and chunk.usage.prompt_tokens_details is not None:
            cached = chunk.usage.prompt_tokens_details.cached_tokens or 0
    assert first is not None
    return first, cached


def test_a_repeated_prompt_is_cached_and_reaches_its_first_token_sooner(tmp_path: Path) -> None:
    flags = ("--ttft-overhead-ms", "5", "--prefill-ms-per-token", "1")
    with fake_llm(tmp_path, *flags) as server:
        client = server.client()
        prompt = "".join(f"sentence {i} of a long shared system prompt. " for i in range(200))
        prompt = prompt[:8000]
        cold, cold_cached = _time_to_first_token(client, prompt)
        warm, warm_cached = _time_to_first_token(client, prompt)
        other, other_cached = _time_to_first_token(client, "x" + prompt)  # another prefix
        assert cold_cached == 0
        assert warm_cached == 2000  # 125 blocks of 64 characters
        assert other_cached == 0
        assert warm < cold / 4, (cold, warm)
        assert other > cold / 2, (cold, other)
        text = server.metrics()
        assert metric(text, "vllm:prefix_cache_queries_total") == 6001
        assert metric(text, "vllm:prefix_cache_hits_total") == 2000
        assert 0 < metric(text, "vllm:kv_cache_usage_perc") <= 1


def test_requests_past_max_num_seqs_wait_and_show_on_metrics(tmp_path: Path) -> None:
    flags = ("--max-num-seqs", "2", "--itl-ms", "50", "--itl-load-factor", "0")
    with fake_llm(tmp_path, *flags) as server:
        client = server.client()
        finished: list[float] = []

        def slow() -> None:
            client.completions.create(model="fake-llm", prompt="wait", max_tokens=30)
            finished.append(time.monotonic())

        threads = [threading.Thread(target=slow) for _ in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            seen = wait_for(
                lambda: (
                    (
                        server.gauge("vllm:num_requests_running"),
                        server.gauge("vllm:num_requests_waiting"),
                    )
                    if server.gauge("vllm:num_requests_waiting") == 2
                    else None
                ),
                timeout=10,
                interval=0.05,
                what="two requests waiting",
            )
            assert seen == (2, 2)
        finally:
            for thread in threads:
                thread.join(timeout=30)
        assert len(finished) == 4
        # Two batches of ~1.5 s one after the other, not four at once.
        assert max(finished) - started > 2.5
        assert server.gauge("vllm:num_requests_running") == 0
        assert server.gauge("vllm:num_requests_waiting") == 0


def test_a_full_waiting_queue_answers_429(tmp_path: Path) -> None:
    flags = ("--max-num-seqs", "1", "--max-waiting", "1", "--itl-ms", "100")
    with fake_llm(tmp_path, *flags) as server:
        body = {"prompt": "x", "max_tokens": 20}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            threads = [
                threading.Thread(target=http.post, args=("/v1/completions",), kwargs={"json": body})
                for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            try:
                wait_for(
                    lambda: server.gauge("vllm:num_requests_waiting") == 1,
                    interval=0.05,
                    what="one waiting request",
                )
                with pytest.raises(openai.RateLimitError) as refused:
                    server.client().completions.create(model="fake-llm", prompt="x")
                assert refused.value.status_code == 429
            finally:
                for thread in threads:
                    thread.join(timeout=30)


def test_startup_keeps_the_port_closed(tmp_path: Path) -> None:
    started = time.monotonic()
    with fake_llm(tmp_path, "--startup-s", "2", wait=False) as server:
        opened = wait_for(
            lambda: time.monotonic() if port_open(server.port) else None,
            timeout=30,
            interval=0.05,
            what="the port to open after start-up",
        )
        assert 2.0 <= opened - started < 10, opened - started
        assert httpx.get(server.url + "/health").status_code == 200


def test_bad_input_is_400_naming_the_field(tmp_path: Path) -> None:
    with fake_llm(tmp_path, "--max-body-bytes", "10000") as server:
        client = server.client()
        with pytest.raises(openai.BadRequestError) as no_messages:
            client.chat.completions.create(model="fake-llm", messages=[])
        assert no_messages.value.param == "messages"
        assert "'messages'" in no_messages.value.message
        with pytest.raises(openai.BadRequestError) as bad_max:
            client.completions.create(model="fake-llm", prompt="x", max_tokens=-1)
        assert bad_max.value.param == "max_tokens"
        with pytest.raises(openai.NotFoundError) as other_model:
            client.completions.create(model="gpt-4", prompt="x")
        assert other_model.value.code == "model_not_found"

        not_json = httpx.post(server.url + "/v1/completions", content=b"{prompt")
        assert not_json.status_code == 400
        assert "not JSON" in not_json.json()["error"]["message"]
        too_big = httpx.post(server.url + "/v1/completions", json={"prompt": "x" * 20000})
        assert too_big.status_code == 400
        assert "10000 bytes" in too_big.json()["error"]["message"]
        unknown = httpx.get(server.url + "/v2/nothing")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["message"] == "no route /v2/nothing"


def test_a_client_leaving_mid_stream_frees_its_slot(tmp_path: Path) -> None:
    with fake_llm(tmp_path, "--max-num-seqs", "1", "--itl-ms", "20") as server:
        stream = server.client().chat.completions.create(
            model="fake-llm",
            messages=[{"role": "user", "content": "a long answer"}],
            max_tokens=4000,  # 80 s if nobody left
            stream=True,
        )
        for _ in zip(range(3), stream, strict=False):
            pass
        assert server.gauge("vllm:num_requests_running") == 1
        left = time.monotonic()
        stream.close()
        wait_for(
            lambda: server.gauge("vllm:num_requests_running") == 0,
            timeout=5,
            interval=0.02,
            what="the slot to be freed",
        )
        assert time.monotonic() - left < 2
        # The one slot serves the next request at once.
        reply = server.client().completions.create(model="fake-llm", prompt="next", max_tokens=2)
        assert reply.choices[0].text == "the model"
