"""An OpenAI-compatible fake LLM server: vLLM's API, metrics and timing, and no model.

Tests and benchmarks of autoscaling, cold starts and prefix-aware routing need a
replica that behaves like vLLM under load without a GPU. The timing follows the
formulas of llm-d's inference simulator:

    TTFT = ttft_overhead_ms + (prompt_tokens - cached_prompt_tokens) * prefill_ms_per_token
    ITL  = itl_ms * (1 + itl_load_factor * (running_requests - 1))

There is no tokenizer: a token is 4 characters of prompt text. At most
``max_num_seqs`` requests run at once; the rest wait in a FIFO queue. A prefix cache
of chained block hashes (an LRU) decides which prompt tokens are cached.

This file runs on its own (stdlib only, Python 3.10+), so a replica can run it from
its source without moorage installed: ``python3 server.py --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

CHARS_PER_TOKEN = 4
HEAD_LIMIT = 64 * 1024
POLL_S = 0.05  # how often a sleeping request looks for its client having left
WORDS = ("the", "model", "says", "hello", "from", "a", "fake", "server", "that", "streams")
# vLLM's histogram buckets.
TTFT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25)
TTFT_BUCKETS += (0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
ITL_BUCKETS += (0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
REASONS.update({429: "Too Many Requests", 500: "Internal Server Error"})
AT_LEAST_ONE = frozenset({"max_num_seqs", "block_chars", "cache_blocks", "max_body_bytes"})
ROUTES = {"/health": "GET", "/v1/models": "GET", "/metrics": "GET"}
ROUTES.update({"/v1/chat/completions": "POST", "/v1/completions": "POST"})


@dataclass(frozen=True)
class Settings:
    """Every setting is a flag (``--max-num-seqs 5``) or ``FAKE_LLM_MAX_NUM_SEQS``."""

    port: int = 8000
    host: str = "0.0.0.0"
    model: str = "fake-llm"
    max_num_seqs: int = 5
    max_waiting: int = 1000
    ttft_overhead_ms: float = 20.0
    prefill_ms_per_token: float = 0.05
    itl_ms: float = 10.0
    itl_load_factor: float = 0.1
    default_max_tokens: int = 16
    max_output_tokens: int = 4096
    block_chars: int = 64
    cache_blocks: int = 2048
    startup_s: float = 0.0
    max_body_bytes: int = 8 * 1024 * 1024


# -- the model: pure functions and a cache without a clock ------------------------------


def count_tokens(text: str) -> int:
    """Tokens in ``text``: one per 4 characters, rounded up (no tokenizer)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def ttft_s(prompt_tokens: int, cached_tokens: int, settings: Settings) -> float:
    """Time to first token once running: a fixed overhead plus prefill of uncached tokens."""
    uncached = max(0, prompt_tokens - cached_tokens)
    return (settings.ttft_overhead_ms + uncached * settings.prefill_ms_per_token) / 1000


def itl_s(running: int, settings: Settings) -> float:
    """Inter-token latency: grows with the running batch, as decoding does on a GPU."""
    return settings.itl_ms * (1 + settings.itl_load_factor * max(0, running - 1)) / 1000


def block_keys(text: str, block_chars: int) -> list[bytes]:
    """One key per full block of ``text``, each hashed with the key before it, so equal
    blocks after different prefixes have different keys (a partial last block has none)."""
    keys, previous = [], b""
    for start in range(0, len(text) - block_chars + 1, block_chars):
        block = text[start : start + block_chars].encode()
        previous = hashlib.sha256(previous + block).digest()[:16]
        keys.append(previous)
    return keys


class PrefixCache:
    """An LRU of block keys, like vLLM's prefix cache of KV blocks."""

    def __init__(self, capacity: int, block_chars: int) -> None:
        self.capacity = capacity
        self.block_chars = block_chars
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def usage(self) -> float:
        return len(self._keys) / self.capacity

    def match(self, keys: list[bytes]) -> int:
        """How many leading ``keys`` are cached (a chain stops at its first miss)."""
        matched = 0
        for key in keys:
            if key not in self._keys:
                break
            matched += 1
        return matched

    def touch(self, keys: list[bytes]) -> None:
        """Inserts or refreshes ``keys``, last block first, so a prompt's tail is evicted
        before its head (as vLLM frees blocks) and a shorter prefix stays usable."""
        for key in reversed(keys):
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def admit(self, text: str) -> int:
        """Cached tokens of ``text`` before it is prefilled; then its blocks are cached."""
        keys = block_keys(text, self.block_chars)
        matched = self.match(keys)
        self.touch(keys)
        return min(count_tokens(text), matched * self.block_chars // CHARS_PER_TOKEN)


def output_tokens(count: int) -> list[str]:
    """Deterministic output: the same words in the same order for every request."""
    return [(" " if i else "") + WORDS[i % len(WORDS)] for i in range(count)]


# -- requests ---------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, **kw: str) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.type = kw.get("type", "invalid_request_error")
        self.code = kw.get("code")

    def body(self) -> dict[str, Any]:
        err = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": err}


@dataclass(frozen=True)
class Job:
    chat: bool
    prompt: str
    max_tokens: int
    finish_reason: str
    stream: bool
    include_usage: bool


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ApiError(400, f"'{where}' must be a string or a list of content parts", where)
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise ApiError(400, f"'{where}[{j}]' must be a content part object", f"{where}[{j}]")
        if part.get("type", "text") == "text":
            if not isinstance(part.get("text"), str):
                msg = f"'{where}[{j}].text' must be a string"
                raise ApiError(400, msg, f"{where}[{j}].text")
            texts.append(part["text"])
    return "".join(texts)


def _optional(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    # JSON's true is a Python int too; only a boolean field takes it.
    wrong = not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
    if value is not None and wrong:
        raise ApiError(400, f"'{name}' must be {what}", name)
    return value


def parse_job(body: Any, chat: bool, settings: Settings) -> Job:
    """Validates a request body; a bad field is a 400 naming it."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = _optional(body, "model", str, "a string")
    if model is not None and model != settings.model:
        msg = f"The model `{model}` does not exist; this server serves `{settings.model}`."
        raise ApiError(404, msg, "model", type="NotFoundError", code="model_not_found")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list of messages", "messages")
        texts = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                msg = f"'messages[{i}]' must be an object with a string 'role'"
                raise ApiError(400, msg, f"messages[{i}]")
            texts.append(_text_of(message.get("content"), f"messages[{i}].content"))
        prompt = "\n".join(texts)
    else:
        raw = body.get("prompt")
        if isinstance(raw, str):
            prompt = raw
        elif isinstance(raw, list) and raw and all(isinstance(p, str) for p in raw):
            prompt = "\n".join(raw)
        else:
            raise ApiError(
                400, "'prompt' must be a string or a non-empty list of strings", "prompt"
            )
    name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    asked = _optional(body, name, int, "an integer of at least 1")
    if asked is not None and asked < 1:
        raise ApiError(400, f"'{name}' must be an integer of at least 1", name)
    wanted = settings.default_max_tokens if asked is None else asked
    finish = "length" if asked is not None or wanted > settings.max_output_tokens else "stop"
    stream = bool(_optional(body, "stream", bool, "a boolean"))
    options = _optional(body, "stream_options", dict, "an object") or {}
    if not isinstance(options.get("include_usage", False), bool):
        msg = "'stream_options.include_usage' must be a boolean"
        raise ApiError(400, msg, "stream_options.include_usage")
    include_usage = stream and bool(options.get("include_usage"))
    return Job(chat, prompt, min(wanted, settings.max_output_tokens), finish, stream, include_usage)


# -- metrics ----------------------------------------------------------------------------


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str, label: str) -> list[str]:
        out, total = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            total += count
            out.append(f'{name}_bucket{{{label},le="{bound}"}} {float(total)}')
        out.append(f'{name}_bucket{{{label},le="+Inf"}} {float(self.count)}')
        out.append(f"{name}_sum{{{label}}} {self.sum}")
        out.append(f"{name}_count{{{label}}} {float(self.count)}")
        return out


class Disconnected(Exception):
    """The client left: the request stops and frees its slot."""


class QueueFull(Exception):
    pass


# -- the engine: a running batch, a waiting queue, the cache and the counters ------------


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = PrefixCache(settings.cache_blocks, settings.block_chars)
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.counters = dict.fromkeys(("queries", "hits", "prompt", "generation"), 0)
        self.success = {"stop": 0, "length": 0}
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)

    async def acquire(self, gone: Callable[[], bool]) -> None:
        """A running slot, at once or in FIFO order; leaves the queue if the client does."""
        if self.running < self.settings.max_num_seqs and not self.waiting:
            self.running += 1
            return
        if len(self.waiting) >= self.settings.max_waiting:
            raise QueueFull
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            while not turn.done():
                await asyncio.wait([turn], timeout=POLL_S)
                if not turn.done() and gone():
                    raise Disconnected
        except BaseException:
            if turn.done():
                self.release()  # the slot was handed over as the client left
            else:
                self.waiting.remove(turn)
            raise

    def release(self) -> None:
        """Hands the slot to the longest waiting request, or frees it."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1

    def metrics(self) -> str:
        """Prometheus text with vLLM's names; a counter's sample ends in ``_total``, as
        prometheus_client (which vLLM uses) writes it."""
        label, c, out = f'model_name="{self.settings.model}"', self.counters, []
        plain = (
            ("num_requests_running", "gauge", self.running, "Requests running."),
            ("num_requests_waiting", "gauge", len(self.waiting), "Requests waiting."),
            ("kv_cache_usage_perc", "gauge", self.cache.usage(), "KV-cache usage, 1 is full."),
            ("prefix_cache_queries", "counter", c["queries"], "Prefix cache queries, in tokens."),
            ("prefix_cache_hits", "counter", c["hits"], "Prefix cache hits, in tokens."),
            ("prompt_tokens", "counter", c["prompt"], "Prefill tokens processed."),
            ("generation_tokens", "counter", c["generation"], "Generation tokens processed."),
            ("request_success", "counter", None, "Finished requests by finish reason."),
            ("time_to_first_token_seconds", "histogram", self.ttft, "Time to first token."),
            ("inter_token_latency_seconds", "histogram", self.itl, "Inter-token latency."),
        )
        for name, kind, value, doc in plain:
            out += [f"# HELP vllm:{name} {doc}", f"# TYPE vllm:{name} {kind}"]
            if isinstance(value, Histogram):
                out += value.lines(f"vllm:{name}", label)
            elif value is None:
                for reason, n in self.success.items():
                    out.append(f'vllm:{name}_total{{{label},finished_reason="{reason}"}} {n}.0')
            else:
                sample = f"vllm:{name}_total" if kind == "counter" else f"vllm:{name}"
                out.append(f"{sample}{{{label}}} {float(value)}")
        return "\n".join(out) + "\n"


# -- HTTP/1.1 -----------------------------------------------------------------------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def gone(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    async def pause(self, seconds: float) -> None:
        """Sleeps ``seconds``, raising ``Disconnected`` soon after the client leaves."""
        deadline = time.monotonic() + seconds
        while True:
            if self.gone():
                raise Disconnected
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, POLL_S))

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise Disconnected from exc

    async def respond(
        self, status: int, body: bytes, ctype: str = "application/json", keep: bool = True
    ) -> None:
        head = f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        head += "" if keep else "Connection: close\r\n"
        await self.send(head.encode() + b"\r\n" + body)

    async def start_stream(self) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        await self.send((head + "Transfer-Encoding: chunked\r\n\r\n").encode())

    async def event(self, payload: Any) -> None:
        data = (
            "data: " + (payload if isinstance(payload, str) else dumps(payload)) + "\n\n"
        ).encode()
        await self.send(b"%x\r\n%s\r\n" % (len(data), data))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if len(body) + size > limit:
                raise ApiError(400, f"the request body is over {limit} bytes")
            body += await reader.readexactly(size + 2)
            body = body[:-2]
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return body
    length = int(headers.get("content-length", "0"))
    if length < 0 or length > limit:
        raise ApiError(400, f"the request body is over {limit} bytes (Content-Length {length})")
    return await reader.readexactly(length)


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer)
        try:
            while await self.exchange(conn):
                pass
        except (Disconnected, ConnectionError, asyncio.IncompleteReadError):
            pass
        except (asyncio.LimitOverrunError, ValueError):
            with contextlib.suppress(Disconnected):
                error = ApiError(400, "malformed request head")
                await conn.respond(400, dumps(error.body()).encode(), keep=False)
        finally:
            writer.close()

    async def exchange(self, conn: Connection) -> bool:
        """One request and its response; whether the connection stays open."""
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if headers.get("expect", "").lower() == "100-continue":
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await read_body(conn.reader, headers, self.settings.max_body_bytes)
        except ApiError as error:
            await conn.respond(error.status, dumps(error.body()).encode(), keep=False)
            return False
        path = target.split("?")[0]
        try:
            await self.route(conn, method, path, body, keep)
        except ApiError as error:
            await conn.respond(error.status, dumps(error.body()).encode(), keep=keep)
        return keep

    async def route(
        self, conn: Connection, method: str, path: str, body: bytes, keep: bool
    ) -> None:
        if path not in ROUTES:
            raise ApiError(404, f"no route {path}", type="NotFoundError")
        if method != ROUTES[path]:
            raise ApiError(405, f"{path} takes {ROUTES[path]}, not {method}")
        if path == "/health":
            await conn.respond(200, b"", keep=keep)
        elif path == "/metrics":
            text = self.engine.metrics().encode()
            await conn.respond(200, text, "text/plain; version=0.0.4; charset=utf-8", keep)
        elif path == "/v1/models":
            card = {
                "id": self.settings.model,
                "object": "model",
                "created": 0,
                "owned_by": "fake-llm",
            }
            await conn.respond(200, dumps({"object": "list", "data": [card]}).encode(), keep=keep)
        else:
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, f"the request body is not JSON: {exc}") from None
            job = parse_job(parsed, path == "/v1/chat/completions", self.settings)
            await self.generate(conn, job, keep)

    async def generate(self, conn: Connection, job: Job, keep: bool) -> None:
        """Queues, prefills and decodes ``job``, sending tokens as they are made."""
        arrived, engine = time.monotonic(), self.engine
        try:
            await engine.acquire(conn.gone)
        except QueueFull:
            msg = f"{len(engine.waiting)} requests are waiting, the most this server queues"
            raise ApiError(429, msg, type="rate_limit_error", code="rate_limit_exceeded") from None
        try:
            prompt_tokens = count_tokens(job.prompt)
            cached = engine.cache.admit(job.prompt)
            engine.counters["queries"] += prompt_tokens
            engine.counters["hits"] += cached
            engine.counters["prompt"] += prompt_tokens
            await conn.pause(ttft_s(prompt_tokens, cached, self.settings))
            engine.ttft.observe(time.monotonic() - arrived)
            reply = Reply(job, self.settings.model, prompt_tokens, cached)
            tokens = output_tokens(job.max_tokens)
            if job.stream:
                await conn.start_stream()
                for chunk in reply.opening():
                    await conn.event(chunk)
            last = time.monotonic()
            for i, token in enumerate(tokens):
                if i:
                    await conn.pause(itl_s(engine.running, self.settings))
                    engine.itl.observe(time.monotonic() - last)
                    last = time.monotonic()
                engine.counters["generation"] += 1
                if job.stream:
                    await conn.event(reply.chunk(token))
            engine.success[job.finish_reason] += 1
            if job.stream:
                for chunk in reply.closing():
                    await conn.event(chunk)
                await conn.event("[DONE]")
                await conn.send(b"0\r\n\r\n")
            else:
                await conn.respond(200, dumps(reply.whole("".join(tokens))).encode(), keep=keep)
        finally:
            engine.release()


class Reply:
    """OpenAI's response objects for one job."""

    def __init__(self, job: Job, model: str, prompt_tokens: int, cached: int) -> None:
        self.job, self.model = job, model
        self.id = ("chatcmpl-" if job.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if job.chat else "text_completion"
        completion = job.max_tokens
        self.usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _frame(self, choices: list[dict[str, Any]], obj: str) -> dict[str, Any]:
        frame = {"id": self.id, "object": obj, "created": self.created, "model": self.model}
        frame["choices"] = choices
        return frame

    def _choice(self, text: str, finish: str | None, first: bool = False) -> dict[str, Any]:
        if not self.job.chat:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        return {
            "index": 0,
            "delta": delta if text or first else {},
            "logprobs": None,
            "finish_reason": finish,
        }

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.job.chat else "text_completion"
        frame = self._frame([choice], obj)
        if self.job.include_usage:
            frame["usage"] = None
        return frame

    def opening(self) -> list[dict[str, Any]]:
        return [self._chunk(self._choice("", None, first=True))] if self.job.chat else []

    def chunk(self, token: str) -> dict[str, Any]:
        return self._chunk(self._choice(token, None))

    def closing(self) -> list[dict[str, Any]]:
        chunks = [self._chunk(self._choice("", self.job.finish_reason))]
        if self.job.include_usage:
            obj = "chat.completion.chunk" if self.job.chat else "text_completion"
            chunks.append({**self._frame([], obj), "usage": self.usage})
        return chunks

    def whole(self, text: str) -> dict[str, Any]:
        finish = self.job.finish_reason
        if self.job.chat:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self._frame([choice], self.object), "usage": self.usage}


# -- start-up -----------------------------------------------------------------------------


def parse_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Flags, then ``FAKE_LLM_*``, then defaults; ``--port`` defaults to ``$PORT``."""
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="fake-llm", description="An OpenAI-compatible fake LLM server."
    )
    base = Settings()
    for field in fields(Settings):
        default = getattr(base, field.name)
        fallback = env.get("PORT", default) if field.name == "port" else default
        value = env.get("FAKE_LLM_" + field.name.upper(), fallback)
        flag = "--" + field.name.replace("_", "-")
        try:
            parser.add_argument(flag, type=type(default), default=type(default)(value))
        except ValueError:
            parser.error(f"{flag} (from the environment): {value!r} is not a {type(default)}")
    settings = replace(base, **vars(parser.parse_args(argv)))
    for name, value in vars(settings).items():
        least = 1 if name in AT_LEAST_ONE else 0
        if not isinstance(value, str) and value < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}, not {value}")
    return settings


async def serve(settings: Settings) -> None:
    server = Server(settings)
    listener = await asyncio.start_server(
        server.connection, settings.host, settings.port, limit=HEAD_LIMIT
    )
    port = listener.sockets[0].getsockname()[1]
    print(
        f"fake-llm serving model {settings.model} on :{port}, "
        f"max_num_seqs {settings.max_num_seqs}, max_waiting {settings.max_waiting}, "
        f"ttft {settings.ttft_overhead_ms} ms + {settings.prefill_ms_per_token} ms/token, "
        f"itl {settings.itl_ms} ms x (1 + {settings.itl_load_factor} x (running - 1)), "
        f"cache {settings.cache_blocks} blocks of {settings.block_chars} chars",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with listener:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    time.sleep(settings.startup_s)  # model loading: the port stays closed meanwhile
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
