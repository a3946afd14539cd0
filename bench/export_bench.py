"""Exports at a million rows: bulk-load a dataset version into PostgreSQL, then time its export files.

Loads a built DatasetVersion with N rows (default 1,000,000) of CodeOcean-like sizes into a database of
its own (`wavecoder_export_bench`) through PostgreSQL COPY (psycopg 3), then exports it with
`training.exports.export_version`, the function a build calls, once per format, each in a fresh process
so that its peak resident memory (ru_maxrss) is its own: the rows stream from a server-side cursor into
the writers in batches, so memory stays flat whatever N. Prints rows/s, seconds, the file size, the peak
RSS (ru_maxrss), the same process's RSS before the export began (Django, psycopg, pyarrow, datasketch
imported), and the peak of its private memory (RssAnon: the pages of memory-mapped files left out).

    .venv/bin/python bench/export_bench.py                  # load 1M rows (about a minute), then measure
    .venv/bin/python bench/export_bench.py --reuse          # measure what is loaded
    .venv/bin/python bench/export_bench.py --n 100000       # small, quick
    .venv/bin/python bench/export_bench.py --formats messages,alpaca,parquet,all

Targets: chat-messages JSONL at 50,000 rows/s or more, peak RSS under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/wavecoder_export_bench"
TARGET_ROWS_PER_S = 50_000
TARGET_RSS_MB = 300
TASKS = ["generation"] * 57 + ["summarization"] * 16 + ["repair"] * 16 + ["translation"] * 11
LANGUAGES = ["python"] * 5 + ["javascript"] * 2 + ["java", "go", "cpp", "ruby"]


def _texts(rng: random.Random, k: int = 500) -> list[tuple[str, str, str]]:
    """k (instruction, input, output) variants of CodeOcean's sizes: ~150, ~250 (or none) and ~600 chars."""
    verbs = [
        "parse",
        "merge",
        "validate",
        "flatten",
        "count",
        "search",
        "normalize",
        "cache",
        "retry",
        "sort",
    ]
    nouns = ["dates", "sorted lists", "e-mail addresses", "nested lists", "words", "arrays", "whitespace"]
    variants = []
    for n in range(k):
        verb, noun = rng.choice(verbs), rng.choice(nouns)
        instruction = (
            f"Write a Python function that can {verb} {noun}. Handle empty input, invalid values and very "
            f"large inputs gracefully, and document the edge cases — “{noun}” #{n}."
        )
        inp = (
            "" if rng.random() < 0.5 else f"def {verb}_{n}(items):\n    return [x for x in items if x]\n" * 3
        )
        body = "\n".join(
            f"        # step {i}: {verb} the {noun} carefully\n        out.append(x)" for i in range(6)
        )
        output = (
            f"def {verb}_{noun.split()[0]}_{n}(items, key=None):\n"
            f'    """{verb.capitalize()} {noun}; returns a new list."""\n'
            f"    out = []\n    for x in items or []:\n{body}\n    return out\n"
        )
        variants.append((instruction, inp, output))
    return variants


def load(n: int, seed: int = 0) -> float:
    """Replace the bench version with one of n rows; returns the seconds it took."""
    from django.db import connection

    from training.models import DatasetItem, DatasetVersion

    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            f"TRUNCATE {DatasetItem._meta.db_table}, {DatasetVersion._meta.db_table} RESTART IDENTITY CASCADE"
        )
    version = DatasetVersion.objects.create(
        number=1,
        name="export bench",
        status=DatasetVersion.Status.SUCCEEDED,
        item_count=n,
        report={"candidates": n, "by_task": {}, "by_language": {}},
    )
    rng = random.Random(seed)
    texts = _texts(rng)
    columns = "version_id, position, instance_id, task, language, instruction, input, output"
    with connection.cursor() as cur:
        raw = cur.cursor  # psycopg's own cursor
        raw.execute("SET synchronous_commit = off")
        with raw.copy(f"COPY {DatasetItem._meta.db_table} ({columns}) FROM STDIN") as copy:
            for position in range(n):
                instruction, inp, output = texts[position % len(texts)]
                copy.write_row(
                    (
                        version.pk,
                        position,
                        None,
                        TASKS[position % len(TASKS)],
                        LANGUAGES[position % len(LANGUAGES)],
                        instruction,
                        inp,
                        output,
                    )
                )
        raw.execute(f"ANALYZE {DatasetItem._meta.db_table}")
    return time.perf_counter() - started


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _AnonPeak(threading.Thread):
    """Samples RssAnon (heap and other private memory) every 20 ms: ru_maxrss also counts the pages of
    memory-mapped files (the Arrow file `datasets` reads), which the kernel can drop at any time."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb, self.running = 0, True

    def run(self) -> None:
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(0.02)


def child(fmt: str) -> None:
    """Export one format of the bench version in this fresh process; print one JSON line."""
    from training import exports
    from training.models import DatasetVersion

    version = DatasetVersion.objects.get(number=1)
    formats = list(exports.FORMATS) if fmt == "all" else [fmt]
    before = _rss_mb()
    anon = _AnonPeak()
    anon.start()
    with tempfile.TemporaryDirectory(dir=os.environ.get("WAVECODER_BENCH_TMP")) as folder:
        started = time.perf_counter()
        files = exports.export_version(version, Path(folder) / "out", formats=formats)
        seconds = time.perf_counter() - started
        written = sum(f.bytes for f in files.values())
    anon.running = False
    anon.join()
    rows = max(f.rows for f in files.values())
    result = {"rows": rows, "seconds": seconds, "bytes": written, "rss": _rss_mb(), "before": before}
    print(json.dumps(result | {"anon": anon.peak_kb / 1024}))


def _setup(url: str, *, migrate: bool) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="rows in the version")
    parser.add_argument("--db-url", default=DEFAULT_URL)
    parser.add_argument("--reuse", action="store_true", help="measure the rows already loaded")
    parser.add_argument(
        "--formats", default="messages,alpaca,parquet", help="comma-separated; `all` = a build's"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _setup(args.db_url, migrate=False)
        child(args.child)
        return

    from review_bench import _ensure_database  # bench/ is this script's folder, so on sys.path

    _ensure_database(args.db_url)
    _setup(args.db_url, migrate=True)
    from training.models import DatasetItem

    if args.reuse and DatasetItem.objects.filter(version__number=1).exists():
        n = DatasetItem.objects.filter(version__number=1).count()
        print(f"reusing {n:,} rows")
    else:
        n = args.n
        print(f"loading {n:,} rows by COPY …", flush=True)
        print(f"  loaded in {load(n):.1f}s")

    results = []
    for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", fmt, "--db-url", args.db_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            sys.exit(f"export of {fmt} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append((fmt, result))
        print(f"  {fmt}: {result['rows'] / result['seconds']:,.0f} rows/s", flush=True)

    print()
    widths = ((10, "<"), (10, ">"), (8, ">"), (9, ">"), (8, ">"), (12, ">"), (7, ">"), (13, ">"))
    header = ("format", "rows", "seconds", "rows/s", "MB out", "peak RSS MB", "before", "peak anon MB")
    print(" ".join(f"{name:{align}{width}}" for name, (width, align) in zip(header, widths, strict=True)))
    for fmt, r in results:
        print(
            f"{fmt:<10} {r['rows']:>10,} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
            f"{r['bytes'] / 2**20:>8,.0f} {r['rss']:>12,.0f} {r['before']:>7,.0f} {r['anon']:>13,.0f}"
        )
    messages = dict(results).get("messages")
    if messages:
        rate, rss = messages["rows"] / messages["seconds"], messages["rss"]
        verdict = "met" if rate >= TARGET_ROWS_PER_S and rss < TARGET_RSS_MB else "MISSED"
        print(
            f"\nchat-messages JSONL: {rate:,.0f} rows/s (target ≥ {TARGET_ROWS_PER_S:,}), "
            f"peak RSS {rss:,.0f} MB (target < {TARGET_RSS_MB} MB): {verdict}"
        )


if __name__ == "__main__":
    main()
