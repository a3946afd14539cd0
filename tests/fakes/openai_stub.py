"""A stub OpenAI-compatible chat-completions server: a test double for fault and throughput tests.

It is NOT a language model and not the offline LLM (that is `curation.llm.TransformersClient`). It
answers `POST /v1/chat/completions` over real HTTP after a fixed latency, with text from a `responder`
hook, and injects faults at configurable rates from a seeded RNG: 429 (optionally with Retry-After),
500, requests that hang past the client's timeout, truncated JSON and non-JSON message text. It logs
every request, counts the most requests in flight at once, and can be told to fail the n-th request.

    with OpenAIStub(latency=0.2, faults=Faults(rate_429=0.1, retry_after=1)) as stub:
        client = OpenAICompatibleClient(stub.base_url, timeout=2)

For benchmarks: `python -m tests.fakes.openai_stub --port 8089 --latency 0.2`.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Outcomes a request can be given, by `Faults` rates or by `fail_request(n, outcome)`.
OUTCOMES = (
    "ok", "429", "500", "503", "400", "timeout", "truncated_json", "non_json", "broken_body", "401_echo_auth",
)  # fmt: skip
Responder = Callable[[dict], str]


@dataclass
class Faults:
    """Probabilities (0–1) of each fault per request, drawn in this order; the rest succeed."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_truncated_json: float = 0.0
    rate_non_json: float = 0.0
    # Sent as the Retry-After header with every 429: seconds (a number) or an HTTP date (a string).
    retry_after: float | str | None = None
    # How long a "timeout" request hangs before answering (the client should have given up).
    hang_s: float = 30.0


def default_responder(request: dict) -> str:
    """A plausible answer: an object shaped by the requested JSON schema, else a line of text."""
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return json.dumps(example_for_schema(response_format.get("json_schema", {}).get("schema", {})))
    if response_format.get("type") == "json_object":  # llama-cpp-python's form carries a "schema"
        return json.dumps(example_for_schema(response_format.get("schema", {})))
    last = next((m for m in reversed(request.get("messages", [])) if m.get("role") == "user"), {})
    return f"stub answer to: {str(last.get('content', ''))[:60]}"


def example_for_schema(schema: dict) -> Any:
    """The simplest value that satisfies a (simple) JSON schema: first enum value, "stub", 0, …"""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {key: example_for_schema(sub) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {}))] * schema.get("minItems", 1)
    return {"integer": 0, "number": 0.0, "boolean": True, "null": None}.get(kind, "stub")


class OpenAIStub:
    """The stub server in a background thread; use as a context manager, or start()/stop()."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        faults: Faults | None = None,
        responder: Responder = default_responder,
        seed: int = 0,
        response_formats: tuple[str, ...] = ("text", "json_object", "json_schema"),
        reject_status: int = 400,
        include_usage: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "stub-model",
    ) -> None:
        self.latency = latency
        self.faults = faults or Faults()
        self.responder = responder
        # response_format types it accepts; others are rejected with reject_status, as servers without
        # structured output do (OpenAI-style 400; llama-cpp-python's server answers 500 for json_schema).
        self.response_formats = response_formats
        self.reject_status = reject_status
        self.include_usage = include_usage
        self.model = model
        self.requests: list[dict] = []  # request bodies, in arrival order
        self.arrivals: list[float] = []  # time.monotonic() of each arrival
        self.outcomes: list[str] = []  # what each request was given
        self.in_flight = 0
        self.max_in_flight = 0
        self._forced: dict[int, str] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.stub = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client (ends in /v1)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        """How many chat-completion requests arrived."""
        return len(self.requests)

    def fail_request(self, n: int, outcome: str) -> None:
        """Give the n-th request (1-based, in arrival order) this outcome, e.g. "429" or "timeout"."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {OUTCOMES}")
        self._forced[n] = outcome

    def start(self) -> OpenAIStub:
        """Serve in a daemon thread."""
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="openai-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging "timeout" requests are released."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- called by the handler threads ---

    def _admit(self, body: dict) -> tuple[int, str]:
        with self._lock:
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            n = len(self.requests)
            draw = self._rng.random()  # drawn for every request, so the sequence depends only on n
            outcome = self._forced.get(n) or self._draw(draw, body)
            self.outcomes.append(outcome)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return n, outcome

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _draw(self, draw: float, body: dict) -> str:
        response_format = body.get("response_format")
        if response_format and response_format.get("type") not in self.response_formats:
            return "reject_response_format"
        f = self.faults
        for outcome, rate in (
            ("429", f.rate_429),
            ("500", f.rate_500),
            ("timeout", f.rate_timeout),
            ("truncated_json", f.rate_truncated_json),
            ("non_json", f.rate_non_json),
        ):
            if draw < rate:
                return outcome
            draw -= rate
        return "ok"

    def _respond(
        self, n: int, outcome: str, body: dict, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for request n (after the latency has passed)."""
        if outcome == "timeout":
            self._stopping.wait(self.faults.hang_s)
            outcome = "ok"
        if outcome == "429":
            headers = {} if self.faults.retry_after is None else {"Retry-After": str(self.faults.retry_after)}
            return 429, headers, _error("Rate limit reached (stub).", "rate_limit_exceeded")
        if outcome in ("500", "503"):
            return int(outcome), {}, _error("The server had an error (stub).", "server_error")
        if outcome == "400":
            return 400, {}, _error("Invalid request (stub).", "invalid_request_error")
        if outcome == "401_echo_auth":
            # Careless servers (and proxies) quote the credentials they refused.
            auth = (headers or {}).get("authorization", "")
            message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')} (header: {auth})"
            return 401, {}, _error(message, "invalid_api_key")
        if outcome == "reject_response_format":
            message = "Unrecognized request argument supplied: response_format (stub)"
            return self.reject_status, {}, _error(message, "invalid_request_error", param="response_format")
        if outcome == "broken_body":
            return 200, {}, b'{"id": "chatcmpl-broken", "choices": [{"mess'
        text = self.responder(body)
        if outcome == "truncated_json":
            text = text[: max(1, len(text) // 2)]
        elif outcome == "non_json":
            text = "I'm sorry, but as a stub I can only answer in prose today."
        return 200, {}, json.dumps(self._completion(n, body, text)).encode()

    def _completion(self, n: int, body: dict, text: str) -> dict:
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion: dict[str, Any] = {
            "id": f"chatcmpl-stub-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
        }
        if self.include_usage:
            # Words stand in for tokens: deterministic and good enough to check the accounting.
            words = len(text.split())
            completion["usage"] = {
                "prompt_tokens": prompt_words,
                "completion_tokens": words,
                "total_tokens": prompt_words + words,
            }
        return completion


def _error(message: str, code: str, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": code, "param": param, "code": code}}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default 5 would refuse bursts of concurrent connections
    stub: OpenAIStub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects
    # Headers and body go out in two writes; Nagle + delayed ACK would add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: tests and benchmarks make thousands of requests

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/").endswith("/models"):
            self._send(
                200, {}, json.dumps({"object": "list", "data": [{"id": self.server.stub.model}]}).encode()
            )
        else:
            self._send(404, {}, _error("Not found (stub).", "not_found"))

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {}, _error("Not found (stub).", "not_found"))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, {}, _error("Request body is not JSON (stub).", "invalid_request_error"))
            return
        stub = self.server.stub
        n, outcome = stub._admit(body)
        try:
            stub._stopping.wait(stub.latency)
            request_headers = {name.lower(): value for name, value in self.headers.items()}
            status, headers, payload = stub._respond(n, outcome, body, request_headers)
            self._send(status, headers, payload)
        finally:
            stub._leave()

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to do


def main() -> None:
    """Serve until interrupted (for benchmarks and manual checks)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    for name in ("429", "500", "timeout", "truncated_json", "non_json"):
        parser.add_argument(f"--rate-{name.replace('_', '-')}", type=float, default=0.0, dest=f"rate_{name}")
    parser.add_argument("--retry-after", default=None)
    parser.add_argument("--responder", help="module:function answering each request (default: schema-shaped)")
    args = parser.parse_args()
    responder = default_responder
    if args.responder:
        import importlib

        module, _, name = args.responder.partition(":")
        responder = getattr(importlib.import_module(module), name)
    faults = Faults(
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_timeout=args.rate_timeout,
        rate_truncated_json=args.rate_truncated_json,
        rate_non_json=args.rate_non_json,
        retry_after=args.retry_after,
    )
    stub = OpenAIStub(
        latency=args.latency,
        faults=faults,
        seed=args.seed,
        host=args.host,
        port=args.port,
        responder=responder,
    )
    print(f"OpenAI stub (test double) on {stub.base_url}, latency {args.latency} s", flush=True)
    try:
        stub._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub._server.server_close()


if __name__ == "__main__":
    main()
