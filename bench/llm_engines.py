"""The offline LLM engines on this machine: which one should the demo serve SmolLM2-135M-Instruct with?

Engines:
- transformers in-process (`curation.llm.TransformersClient`), float32 and bfloat16: load time, single
  stream tokens/s, and the aggregate tokens/s of 8 and 16 concurrent prompts batched together;
- llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) on the same GGUF, through
  `curation.llm.OpenAICompatibleClient`, when a Python with `llama_cpp` is available (it is a 13-minute
  source build, so it is looked for in a separate venv too): start-up time, single stream tokens/s,
  4 concurrent requests.
Both: JSON validity on 5 instance-generation prompts (llama.cpp constrains decoding to the schema;
transformers only describes it in the prompt), and the time to one instance-sized (~250 token) answer
from a cold start, which bounds the demo's "first reviewable instance within 2 minutes".

    .venv/bin/python bench/llm_engines.py                       # everything available, ~4 minutes
    .venv/bin/python bench/llm_engines.py --llama-python /tmp/llamavenv/bin/python --skip-transformers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Measured earlier on this kind of machine (../shared/CONTEXT.md), for comparison.
CONTEXT_NUMBERS = {
    "transformers fp32 single tok/s": "~9",
    "transformers bf16 single tok/s": "~14",
    "transformers bf16 batch 16 aggregate tok/s": "~28",
    "llama.cpp single tok/s": "~40",
    "transformers first load (GGUF) s": "~70",
    "transformers load (converted) s": "~2",
}

LONG_PROMPT = [
    {"role": "user", "content": "Write a detailed tutorial on Python lists with many code examples."}
]
SNIPPETS = [
    "def add(a, b):\n    return a + b",
    "def is_palindrome(s):\n    s = s.lower()\n    return s == s[::-1]",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "def count_words(text):\n    counts = {}\n    for word in text.split():\n"
    "        counts[word] = counts.get(word, 0) + 1\n    return counts",
    "def flatten(items):\n    out = []\n    for item in items:\n        out.extend(item)\n    return out",
]
INSTANCE_SCHEMA = {
    "title": "Instance",
    "type": "object",
    "properties": {
        "instruction": {"type": "string"},
        "input": {"type": "string"},
        "output": {"type": "string"},
    },
    "required": ["instruction", "input", "output"],
    "additionalProperties": False,
}


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()


def _instance_prompt(code: str) -> list[dict]:
    return [
        {"role": "system", "content": "You write training examples for code models."},
        {
            "role": "user",
            "content": "From the code below, write a code generation example: an instruction (one or two "
            "sentences) asking for this function, an empty input, and the function as output.\n\n"
            f"Code:\n{code}",
        },
    ]


def _valid_instance(text: str) -> bool:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("instruction", "output"))


async def _measure_client(client, label: str, *, tokens: int, batches: tuple[int, ...], rows: list) -> None:
    from curation.llm import Completion

    async def one(messages, max_tokens, **kwargs) -> Completion:
        return await client.complete(messages, model="smollm2-135m-instruct", max_tokens=max_tokens, **kwargs)

    started = time.perf_counter()
    first = await one(_instance_prompt(SNIPPETS[2]), 250, json_schema=INSTANCE_SCHEMA)
    rows.append(
        (
            label,
            "first instance answer (≤250 tokens), cold s",
            f"{time.perf_counter() - started:.1f}",
            f"{first.completion_tokens} tokens",
        )
    )
    await one([{"role": "user", "content": "Hi"}], 8)  # warm-up
    # Best of two: the machine is shared, and the engine's speed is what is asked.
    single = max(
        [await one(LONG_PROMPT, tokens) for _ in range(2)], key=lambda c: c.completion_tokens / c.latency_s
    )
    rate = single.completion_tokens / single.latency_s
    rows.append((label, "projected 250-token answer s", f"{250 / rate:.1f}", "250 / single-stream tok/s"))
    rows.append(
        (
            label,
            "single stream tok/s",
            f"{single.completion_tokens / single.latency_s:.1f}",
            f"{single.completion_tokens} tokens",
        )
    )
    for size in batches:
        prompts = [
            [{"role": "user", "content": f"{LONG_PROMPT[0]['content']} Part {i + 1}."}] for i in range(size)
        ]
        started = time.perf_counter()
        done = await asyncio.gather(*(one(p, 64) for p in prompts))
        elapsed = time.perf_counter() - started
        total = sum(c.completion_tokens for c in done)
        rows.append(
            (
                label,
                f"{size} concurrent prompts, aggregate tok/s",
                f"{total / elapsed:.1f}",
                f"{total} tokens in {elapsed:.1f} s",
            )
        )
    valid = 0
    started = time.perf_counter()
    for code in SNIPPETS:
        valid += _valid_instance((await one(_instance_prompt(code), 250, json_schema=INSTANCE_SCHEMA)).text)
    elapsed = time.perf_counter() - started
    rows.append(
        (
            label,
            "valid JSON instances (5 prompts, ≤250 tokens)",
            f"{valid}/5",
            f"{elapsed / len(SNIPPETS):.1f} s per answer",
        )
    )


def bench_transformers(rows: list, *, tokens: int) -> None:
    """Both dtypes in-process; the GGUF conversion is timed only when it has not happened yet."""
    from curation.llm import TransformersClient, ensure_offline_model

    started = time.perf_counter()
    path = ensure_offline_model()
    rows.append(
        (
            "transformers",
            "ensure_offline_model (convert once / found) s",
            f"{time.perf_counter() - started:.1f}",
            str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        )
    )
    for dtype, batches in (("float32", ()), ("bfloat16", (8, 16))):
        label = f"transformers {'fp32' if dtype == 'float32' else 'bf16'}"
        client = TransformersClient(path, dtype=dtype, max_batch_size=16)
        started = time.perf_counter()
        client.load()
        rows.append((label, "load (converted checkpoint) s", f"{time.perf_counter() - started:.1f}", ""))
        asyncio.run(_measure_client(client, label, tokens=tokens, batches=batches, rows=rows))
        del client


def _llama_python(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [sys.executable, "/tmp/llamavenv/bin/python"]
    for python in candidates:
        if python and Path(python).exists():
            probe = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True)
            if probe.returncode == 0:
                return python
    return None


def bench_llama_server(rows: list, python: str, *, tokens: int, threads: int) -> None:
    """Start the server on a free port, measure through OpenAICompatibleClient, stop it."""
    from curation.llm import OpenAICompatibleClient, offline_gguf_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(offline_gguf_path()),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    started = time.perf_counter()
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.1)
        label = f"llama.cpp server ({threads} thr)"
        rows.append((label, "start until ready s", f"{time.perf_counter() - started:.1f}", ""))
        client = OpenAICompatibleClient(
            f"http://127.0.0.1:{port}/v1", timeout=600, max_retries=0, concurrency=4
        )
        asyncio.run(_measure_client(client, label, tokens=tokens, batches=(4,), rows=rows))
        rows.append((label, "structured output form accepted", str(client.format_mode), ""))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _print_table(rows: list) -> None:
    headers = ("engine", "measurement", "here", "notes")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print("\nCONTEXT.md (measured earlier on this kind of machine):")
    for name, value in CONTEXT_NUMBERS.items():
        print(f"  {name}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-python", help="a Python with llama-cpp-python[server] installed")
    parser.add_argument("--tokens", type=int, default=128, help="tokens for the single-stream runs")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument(
        "--llama-threads",
        type=int,
        nargs="+",
        default=[os.cpu_count() or 2],
        help="llama.cpp --n_threads to try",
    )
    args = parser.parse_args()
    _setup_django()
    import logging

    import torch

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f} at start\n",
        flush=True,
    )
    rows: list = []
    if not args.skip_transformers:
        bench_transformers(rows, tokens=args.tokens)
    python = None if args.skip_llama else _llama_python(args.llama_python)
    if python:
        for threads in args.llama_threads:
            bench_llama_server(rows, python, tokens=args.tokens, threads=threads)
    elif not args.skip_llama:
        rows.append(("llama.cpp server", "skipped", "-", "no Python with llama_cpp (see --llama-python)"))
    _print_table(rows)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
