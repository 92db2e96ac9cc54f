"""The fake LLM server's model, exactly: the TTFT and ITL formulas, the token count, the
prefix cache's chained blocks and LRU order, request validation, and the replica command
(under the command quota, and it runs)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from moorage.fakellm.command import fake_llm_command
from moorage.fakellm.server import (
    ApiError,
    PrefixCache,
    Settings,
    block_keys,
    count_tokens,
    itl_s,
    output_tokens,
    parse_job,
    parse_settings,
    ttft_s,
)
from tests.support.server import end_process, free_port, track, wait_for

SETTINGS = Settings()


def test_a_token_is_four_characters_rounded_up() -> None:
    assert [count_tokens("x" * n) for n in (0, 1, 4, 5, 8, 8000)] == [0, 1, 1, 2, 2, 2000]


def test_ttft_is_overhead_plus_prefill_of_uncached_tokens() -> None:
    settings = Settings(ttft_overhead_ms=20, prefill_ms_per_token=0.5)
    assert ttft_s(0, 0, settings) == pytest.approx(0.020)
    assert ttft_s(1000, 0, settings) == pytest.approx(0.520)
    assert ttft_s(1000, 800, settings) == pytest.approx(0.120)
    assert ttft_s(1000, 1000, settings) == pytest.approx(0.020)
    assert ttft_s(10, 50, settings) == pytest.approx(0.020)  # never below the overhead


def test_itl_grows_with_the_running_batch() -> None:
    settings = Settings(itl_ms=10, itl_load_factor=0.1)
    assert itl_s(1, settings) == pytest.approx(0.010)
    assert itl_s(5, settings) == pytest.approx(0.014)
    assert itl_s(0, settings) == pytest.approx(0.010)
    assert itl_s(3, Settings(itl_ms=10, itl_load_factor=0)) == pytest.approx(0.010)


def test_a_block_matches_only_after_the_same_prefix() -> None:
    a, b, c = "a" * 4, "b" * 4, "c" * 4
    cache = PrefixCache(capacity=100, block_chars=4)
    assert cache.admit(a + b + c) == 0
    assert cache.admit(a + b + c) == 3  # three blocks of 4 chars, 1 token each
    assert cache.admit(a + b + "x" * 4) == 2
    assert cache.admit(b + c) == 0  # b after a differs from b first
    assert cache.admit(c + b + c) == 0
    assert block_keys(a + b, 4)[1] != block_keys(b, 4)[0]
    assert len(block_keys(a + "ab", 4)) == 1  # a partial last block has no key
    assert cache.admit(a + "zz") == 1  # the cached block, not the partial one


def test_the_least_recently_used_blocks_are_evicted_tail_first() -> None:
    cache = PrefixCache(capacity=4, block_chars=1)
    first, second = block_keys("abc", 1), block_keys("xyz", 1)
    cache.admit("abc")
    cache.admit("xyz")
    # Room for 4: "abc"'s tail and middle went first; its head outlived them.
    assert [key in cache for key in first] == [True, False, False]
    assert all(key in cache for key in second)
    assert cache.usage() == 1.0
    cache.admit("a")  # touching a block makes it the newest
    cache.admit("q")
    assert first[0] in cache
    assert second[2] not in cache
    assert cache.match(block_keys("xyz", 1)) == 2
    assert cache.match(block_keys("abc", 1)) == 1


def test_a_cache_smaller_than_a_prompt_keeps_the_prompt_head() -> None:
    cache = PrefixCache(capacity=2, block_chars=1)
    cache.admit("abcdef")
    assert len(cache) == 2
    assert cache.match(block_keys("abcdef", 1)) == 2


def test_output_is_deterministic_words() -> None:
    assert output_tokens(3) == ["the", " model", " says"]
    assert len(output_tokens(25)) == 25
    assert output_tokens(25) == output_tokens(25)


def _job_error(body: Any, chat: bool = True) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_job(body, chat, SETTINGS)
    return caught.value


@pytest.mark.parametrize(
    ("body", "chat", "param"),
    [
        ({}, True, "messages"),
        ({"messages": []}, True, "messages"),
        ({"messages": "hi"}, True, "messages"),
        ({"messages": [{"content": "hi"}]}, True, "messages[0]"),
        ({"messages": [{"role": "user", "content": 3}]}, True, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, True, None),
        ({"prompt": 3}, False, "prompt"),
        ({"prompt": []}, False, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, False, "max_tokens"),
        ({"prompt": "x", "max_tokens": "5"}, False, "max_tokens"),
        ({"prompt": "x", "max_tokens": True}, False, "max_tokens"),
        ({"prompt": "x", "stream": "yes"}, False, "stream"),
        ({"prompt": "x", "stream_options": {"include_usage": 1}}, False, None),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    body: dict[str, Any], chat: bool, param: str | None
) -> None:
    error = _job_error(body, chat)
    assert error.status == 400
    if param is None:  # a nested field: named in full
        assert error.param is not None
        assert error.param in error.message
    else:
        assert error.param == param
        assert repr(param)[1:-1] in error.message
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_another_model_is_404_model_not_found() -> None:
    error = _job_error({"model": "gpt-4", "prompt": "x"}, chat=False)
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")


def test_prompt_text_and_output_length() -> None:
    chat = parse_job(
        {
            "messages": [
                {"role": "system", "content": "abc"},
                {"role": "user", "content": [{"type": "text", "text": "de"}, {"type": "image"}]},
            ],
            "max_completion_tokens": 9999,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        True,
        SETTINGS,
    )
    assert (chat.prompt, chat.max_tokens, chat.finish_reason) == ("abc\nde", 4096, "length")
    assert chat.stream
    assert chat.include_usage
    plain = parse_job({"prompt": ["a", "b"], "model": "fake-llm"}, False, SETTINGS)
    assert (plain.prompt, plain.max_tokens, plain.finish_reason) == ("a\nb", 16, "stop")
    assert not plain.stream
    assert not plain.include_usage


def test_settings_come_from_flags_then_env_then_defaults() -> None:
    env = {"PORT": "9001", "FAKE_LLM_MAX_NUM_SEQS": "3", "FAKE_LLM_ITL_MS": "2.5"}
    settings = parse_settings(["--max-num-seqs", "7", "--model", "m"], env)
    assert (settings.port, settings.max_num_seqs, settings.itl_ms, settings.model) == (
        9001,
        7,
        2.5,
        "m",
    )
    assert parse_settings([], {}).port == 8000
    with pytest.raises(SystemExit):
        parse_settings(["--max-num-seqs", "0"], {})


def test_the_command_stays_well_under_the_command_quota() -> None:
    command = fake_llm_command(
        model="a-model", max_num_seqs=2, ttft_overhead_ms=5, startup_s=0, cache_blocks=64
    )
    assert len(command.encode()) < 12 * 1024, len(command)
    with pytest.raises(ValueError, match="max_num_seq"):
        fake_llm_command(max_num_seq=2)


def test_the_command_runs_the_server_from_its_source(tmp_path: Path) -> None:
    port = free_port()
    command = fake_llm_command(model="from-source", port=port, max_num_seqs=3)
    with (tmp_path / "out").open("wb") as out:
        process = subprocess.Popen(["bash", "-c", command], stdout=out, stderr=subprocess.STDOUT)
    track(process, signal.SIGTERM)
    try:

        def models() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    return dict(json.load(r))
            except OSError:
                assert process.poll() is None, (tmp_path / "out").read_text()
                return None

        listed = wait_for(models, timeout=20, what="the fake LLM server from its command")
        assert [model["id"] for model in listed["data"]] == ["from-source"]
    finally:
        end_process(process, signal.SIGTERM, timeout=10)
    assert process.returncode == 0
    log = (tmp_path / "out").read_text()
    assert log.count("\n") == 1, log
    assert f"fake-llm serving model from-source on :{port}, max_num_seqs 3" in log
