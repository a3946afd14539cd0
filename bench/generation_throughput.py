"""Generation throughput against a stub OpenAI-compatible server with a fixed latency.

Runs a real generation job (Generator + static checks + Discriminator + database writes) against the
stub (tests/fakes/openai_stub.py, a test double with 200 ms per call), at concurrency 32, and the
WaveCoder repository's way of working — one request at a time, generator then discriminator — in the
same run. Prints instances per second beside the ideal (concurrency / (0.2 s × 2 calls)).

    python bench/generation_throughput.py [--instances 640] [--latency 0.2] [--concurrency 32]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WAVECODER_VAR_DIR", tempfile.mkdtemp(prefix="wavecoder-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
os.environ["HF_HUB_OFFLINE"] = "1"

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

from django.core.management import call_command  # noqa: E402

from curation import discrimination, generation  # noqa: E402
from curation.llm import OpenAICompatibleClient, wait_until_ready  # noqa: E402
from curation.models import CodeSample, CodeSource, Instance, SelectionPick, SelectionRun  # noqa: E402

TASKS = ["summarization", "generation", "translation", "repair"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _selection(n: int) -> SelectionRun:
    source = CodeSource.objects.create(name="bench", kind="directory", location=f"/bench/{time.time()}")
    samples = CodeSample.objects.bulk_create(
        CodeSample(
            source=source,
            language="python",
            code=f"def f{i}(a, b):\n    return a + b + {i}\n",
            n_chars=30,
            content_hash=f"{source.pk}-{i}",
            minhash=b"",
        )
        for i in range(n)
    )
    run = SelectionRun.objects.create(k=n, model_name="bench", status=SelectionRun.Status.SUCCEEDED)
    SelectionPick.objects.bulk_create(SelectionPick(run=run, sample=s, rank=r) for r, s in enumerate(samples))
    return run


def concurrent_run(base_url: str, instances: int, concurrency: int) -> tuple[float, int]:
    per_task = instances // len(TASKS)
    job = generation.create_generation_job(
        selection_run=_selection(per_task),
        tasks=TASKS,
        samples_per_task=per_task,
        execute=False,
        concurrency=concurrency,
    )
    client = OpenAICompatibleClient(base_url, timeout=30, concurrency=concurrency)
    start, cpu = time.perf_counter(), time.process_time()
    generation.run_generation(job.pk, client=client)
    elapsed = time.perf_counter() - start
    print(f"(concurrent run used {time.process_time() - cpu:.1f} s of CPU in {elapsed:.1f} s)")
    return elapsed, job.instances.filter(status=Instance.Status.DONE).count()


def sequential_run(base_url: str, instances: int) -> tuple[float, int]:
    """The WaveCoder repository's loop: one blocking request at a time, generator then discriminator."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    job = generation.create_generation_job(
        selection_run=_selection(instances),
        tasks=["generation"],
        samples_per_task=instances,
        execute=False,
        generator_model="sequential",
    )
    rows = list(job.instances.select_related("task", "prompt_version", "sample", "task__current_principles"))
    start = time.perf_counter()
    done = 0
    for row in rows:
        principles = row.task.current_principles
        for messages, schema in [
            (generation.build_messages(row, [], []), None),
            (
                discrimination.build_messages(row, principles, [], []),
                discrimination.judgement_schema([r["id"] for r in principles.rules]),
            ),
        ]:
            request = {"model": "m", "messages": messages}
            if schema is not None:
                request["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": schema},
                }
            client.chat.completions.create(**request)
        done += 1
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=640)
    parser.add_argument("--sequential-instances", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    call_command("migrate", verbosity=0)

    # The stub runs in its own process, as a real server would, so it does not share our interpreter lock.
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.openai_stub",
            "--port",
            str(port),
            "--latency",
            str(args.latency),
            "--responder",
            "tests.fakes.responders:responder",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        if not wait_until_ready(base_url, timeout=30):
            raise SystemExit("the stub server did not start")
        seq_s, seq_n = sequential_run(base_url, args.sequential_instances)
        conc_s, conc_n = concurrent_run(base_url, args.instances, args.concurrency)
    finally:
        server.terminate()
        server.wait(10)

    ideal = args.concurrency / (args.latency * 2)
    seq_rate, conc_rate = seq_n / seq_s, conc_n / conc_s
    print(
        f"stub latency {args.latency * 1000:.0f} ms per call; 2 calls per instance (generator, discriminator)"
    )
    print(f"{'run':<34}{'instances':>10}{'seconds':>10}{'inst/s':>10}")
    print(f"{'sequential (WaveCoder repo loop)':<34}{seq_n:>10}{seq_s:>10.2f}{seq_rate:>10.2f}")
    print(f"{f'concurrent, concurrency {args.concurrency}':<34}{conc_n:>10}{conc_s:>10.2f}{conc_rate:>10.2f}")
    print(
        f"ideal at concurrency {args.concurrency}: {ideal:.1f} inst/s; "
        f"reached {100 * conc_rate / ideal:.0f}% "
        f"(target ≥ 80%); {conc_rate / seq_rate:.1f}× the sequential loop (target ≥ 20×)"
    )


if __name__ == "__main__":
    main()
