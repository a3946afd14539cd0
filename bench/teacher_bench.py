"""How well the offline teacher writes and judges data: one generation job on the demo corpus, per task.

    python bench/teacher_bench.py [--samples 15] [--model qwen2.5-coder-0.5b-instruct] [--threads 2]

Runs in a scratch folder (its own SQLite database and artifacts): ingests the demo's standard-library
packages, selects 4 × samples raw samples with KCenterGreedy, serves the offline model with llama.cpp,
and runs a generation job of `samples` raw samples per task through the app's own stage functions
(`generation.run_generation`), the model as Generator and Discriminator. Prints, per task: the share that
parsed, passed the static checks, passed execution (generation, repair), passed the discriminator; the
share whose output repeats a few-shot example; tokens/s; seconds per instance; the median words of the
discriminator's reasons and the share of reasons that restate the rule's question (both without the
words the judge quoted from the instance); for translation, the
share whose instruction names its real target language. Targets (the issue's): parse ≥ 95%, static ≥ 80%,
execution ≥ 60%, no few-shot copies, reasons ≥ 5 words not restating the question, every translation's
instruction naming its target. For repair it also prints how many passing tests fail on the planted bug.
The numbers are printed as measured; nothing here is tuned to pass.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _own_words(reason: str) -> str:
    """The judge's reason without the words it quoted from the instance (those say nothing by themselves)."""
    return re.sub(r'\s*\(quoted: ".*"\)$', "", reason, flags=re.S)


def _restates(reason: str, question: str) -> bool:
    a = re.sub(r"\W+", " ", _own_words(reason).lower()).strip()
    b = re.sub(r"\W+", " ", question.lower()).strip()
    return not a or difflib.SequenceMatcher(None, a, b).ratio() > 0.75


def _copies_example(output: str, examples: list[str]) -> bool:
    out = output.strip()
    return bool(out) and any(difflib.SequenceMatcher(None, out, e.strip()).ratio() > 0.8 for e in examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=15, help="raw samples per task")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--tries", type=int, help="generator replies per instance (default: the setting)")
    parser.add_argument("--show", type=int, default=10, help="instances to print in full at the end")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="teacher-bench-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "wavecoder_site.settings",
            "WAVECODER_VAR_DIR": str(scratch),
            "HF_HUB_OFFLINE": "1",
            "DATABASE_URL": f"sqlite:///{scratch}/bench.sqlite3",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from curation import catalog, checks, demo, generation, ingest, llm, selection
    from curation.models import Instance, LLMCall, PoolExample, RuleVerdict

    call_command("migrate", verbosity=0)
    catalog.ensure_catalog()
    for package in demo.FIRST_PACKAGES + demo.LATER_PACKAGES:
        folder = demo._stdlib_folder(package)
        if folder is not None:
            ingest.run_ingest(ingest.create_ingest_run(folder, name=f"python-stdlib/{package}").pk)
    run = selection.run_selection(selection.create_selection_run(k=4 * args.samples, seed=0).pk)

    port = _free_port()
    log = scratch / "llama-server.log"
    server = llm.start_llama_server(port, model=args.model, threads=args.threads, log_path=log)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        if not llm.wait_until_ready(base_url, timeout=300):
            raise SystemExit(f"the llama.cpp server did not start; see {log}")
        settings.OPENAI_BASE_URL = base_url
        settings.OPENAI_API_KEY = "none"
        job = generation.create_generation_job(
            selection_run=run,
            tasks=["summarization", "generation", "translation", "repair"],
            samples_per_task=args.samples,
            generator_model=args.model,
            discriminator_model=args.model,
            concurrency=args.concurrency,
            tries=args.tries,
        )
        started = time.monotonic()
        generation.run_generation(job.pk)
        wall = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)

    examples = [e.output for e in PoolExample.objects.filter(origin=PoolExample.Origin.SEED)]
    rows = []
    header = (
        "task",
        "n",
        "parsed",
        "static",
        "executed",
        "disc. passed",
        "copies",
        "tok/s",
        "s/inst",
        "reason words",
        "restated",
        "names target",
        "tests catch bug",
        "gen. calls/inst",
    )
    for slug in ("summarization", "generation", "translation", "repair"):
        instances = list(Instance.objects.filter(job=job, task__slug=slug))
        n = len(instances) or 1
        parsed = [i for i in instances if i.stage not in ("llm_error", "parse_failed")]
        static = [i for i in parsed if i.stage != "check_failed"]
        executable = [i for i in static if i.execution_status in ("passed", "failed", "timeout")]
        executed = [i for i in executable if i.execution_status == "passed"]
        judged = [i for i in instances if i.passed is not None]
        passed = [i for i in judged if i.passed]
        copies = [i for i in parsed if _copies_example(i.output, examples)]
        calls = LLMCall.objects.filter(instance__in=instances)
        tokens = sum(c.completion_tokens for c in calls)
        latency = sum(c.latency_s for c in calls) or 1
        reasons = list(
            RuleVerdict.objects.filter(verdict__instance__in=instances).values_list("reason", "question")
        )
        words = statistics.median([len(_own_words(r).split()) for r, _ in reasons]) if reasons else 0
        restated = sum(_restates(r, q) for r, q in reasons) / (len(reasons) or 1)
        names = (
            f"{sum(checks.names_language(i.instruction, i.target_language) for i in parsed)}/{len(parsed)}"
            if slug == "translation"
            else "–"
        )
        caught = sum(i.execution_detail.startswith("the tests fail on the buggy") for i in executed)
        catches = f"{caught}/{len(executed)}" if slug == "repair" else "–"
        tries = calls.filter(role=LLMCall.Role.GENERATOR).count() / n
        rows.append(
            (
                slug,
                str(len(instances)),
                f"{len(parsed) / n:.0%}",
                f"{len(static) / n:.0%}",
                f"{len(executed)}/{len(executable)}" if slug in ("generation", "repair") else "–",
                f"{len(passed)}/{len(judged)}",
                str(len(copies)),
                f"{tokens / latency:.1f}",
                f"{wall / max(1, job.progress_total):.1f}",
                f"{words:g}",
                f"{restated:.0%}",
                names,
                catches,
                f"{tries:.2f}",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"\nOffline teacher {args.model}: {job.progress_total} instances in {wall:.0f} s "
        f"({args.threads} threads)\n"
    )
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"\nScratch folder (database, server log): {scratch}")
    for instance in Instance.objects.filter(job=job).order_by("task__slug", "pk")[: args.show]:
        print(f"\n--- #{instance.pk} {instance.task.slug} ({instance.stage}, passed={instance.passed})")
        print("instruction:", instance.instruction[:300])
        print("output:", instance.output[:600])
        if instance.tests:
            print("tests:", instance.tests[:300])
        print("execution:", instance.execution_status, instance.execution_detail[:200])


if __name__ == "__main__":
    main()
