"""Review at a million rows: bulk-load judged instances into PostgreSQL, then time the review requests.

Loads N instances (default 1,000,000) with a Verdict and one RuleVerdict per principle each, plus the
samples, jobs and a few earlier reviews they need, into a database of its own (`wavecoder_bench`),
through PostgreSQL COPY (psycopg 3) from rows generated in Python. Then it times, through Django's test
client (so: the whole server side, middleware and templates included, no network), for a reviewer and
a curator:

- the review page (a reload: the instance the reviewer already holds),
- accept (POST, the no-JavaScript form: decide and redirect),
- next instance (the review page right after a decision: the queue hands out a new one),
- accept with htmx (decide, then the next instance's pane in the same response),
- the list page with its filter counts, unfiltered and with task, verdict, failing-rule and text filters,

and prints p50/p95/max in ms per request, queries per request, and the plan of the slowest query of
each request that misses the target (p95 < 100 ms).

    .venv/bin/python bench/review_bench.py                 # load 1M rows (a few minutes), then measure
    .venv/bin/python bench/review_bench.py --reuse         # measure what is loaded
    .venv/bin/python bench/review_bench.py --n 20000       # small, quick

DATABASE_URL is set to the bench database before Django starts; `--db-url` changes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 100.0
CHUNK = 4000  # rows per COPY write


def _ensure_database(url: str) -> None:
    """Create the bench database when it is missing (connecting to `postgres` on the same server)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def _setup_django(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- Data ----------------------------------------------------------------------------------------

LANGUAGES = ["python"] * 5 + ["javascript"] * 2 + ["java", "go", "cpp", "ruby"]
TOPICS = [
    "parse a date string", "merge two sorted lists", "compute a fibonacci number", "validate an email",
    "flatten a nested list", "count word frequencies", "binary search a sorted array", "read a CSV file",
    "retry an HTTP request", "cache function results", "normalize whitespace", "compute a moving average",
]  # fmt: skip
SEARCH_TERMS = ("fibonacci", "binary search", "moving average")


def _escape(text: str) -> str:
    """COPY text format: backslash, tab, newline and carriage return are escaped."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _texts(rng: random.Random, k: int = 400) -> list[tuple[str, str, str, str, str]]:
    """k pre-escaped (instruction, input, output, tests, code) variants of realistic sizes."""
    body = [
        "    result = []",
        "    for item in items:",
        "        if item is None:",
        "            continue",
        "        result.append(transform(item))",
        "    total = sum(len(str(x)) for x in result)",
        "    return result, total",
    ]
    variants = []
    for n in range(k):
        topic = rng.choice(TOPICS)
        name = topic.split()[1] + f"_{n}"
        lines = body[: rng.randint(4, 7)]
        code = f"def {name}(items, transform=str):\n" + "\n".join(lines) + "\n"
        code += "\n".join(
            f"# helper note {i}: handles edge case {i} of {topic}" for i in range(rng.randint(2, 6))
        )
        instruction = (
            f"Write a Python function that can {topic}. It takes the input described below and returns the "
            f"result described in the examples; handle empty input and invalid values gracefully."
        )
        inp = f"The function receives a list of values to {topic} and an optional transform. " * rng.randint(
            2, 5
        )
        output = code + "\n\n" + "\n".join(f"# step {i}: explain part {i} of the approach" for i in range(4))
        tests = f"assert {name}([]) == ([], 0)\nassert {name}(['a']) == (['a'], 1)"
        variants.append(tuple(_escape(s) for s in (instruction, inp, output, tests, code)))
    return variants


@contextmanager
def _copy(cur, table: str, columns: str) -> Iterator:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        yield copy


def _stream(copy, rows: Iterator[str]) -> None:
    buf: list[str] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= CHUNK:
            copy.write("".join(buf))
            buf.clear()
    if buf:
        copy.write("".join(buf))


_DROPPED = "bench_dropped_ddl"


def _drop_secondary(cur, tables: list[str]) -> None:
    """Drop unique constraints and indexes other than primary keys (rebuilt after the load, faster than
    maintaining them row by row); their DDL is saved first so an interrupted run restores them."""
    cur.execute(f"CREATE TABLE IF NOT EXISTS {_DROPPED} (name text primary key, ddl text not null)")
    for table in tables:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'u'",
            [table],
        )
        for name, definition in cur.fetchall():
            ddl = f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            cur.execute(f"INSERT INTO {_DROPPED} VALUES (%s, %s) ON CONFLICT DO NOTHING", [name, ddl])
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        cur.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            [table],
        )
        for name, ddl in cur.fetchall():
            cur.execute(f"INSERT INTO {_DROPPED} VALUES (%s, %s) ON CONFLICT DO NOTHING", [name, ddl])
            cur.execute(f'DROP INDEX "{name}"')


def _restore_secondary(cur) -> None:
    cur.execute(f"SELECT to_regclass('{_DROPPED}')")
    if cur.fetchone()[0] is None:
        return
    cur.execute(f"SELECT name, ddl FROM {_DROPPED}")
    for name, ddl in cur.fetchall():
        t = time.perf_counter()
        cur.execute(ddl)
        cur.execute(f"DELETE FROM {_DROPPED} WHERE name = %s", [name])
        print(f"  rebuilt {name} in {time.perf_counter() - t:.1f}s", flush=True)
    cur.execute(f"DROP TABLE {_DROPPED}")


def load(n: int, url: str, seed: int = 0) -> dict[str, float]:
    """Replace the bench data with n judged instances (a few % already reviewed). Returns timings."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from curation.catalog import ensure_catalog
    from curation.models import (
        CodeSample,
        CodeSource,
        CodeTask,
        GenerationJob,
        Instance,
        Review,
        RuleVerdict,
        SelectionRun,
        Verdict,
    )
    from curation.roles import CURATOR, REVIEWER, grant

    timings: dict[str, float] = {}
    rng = random.Random(seed)
    t0 = time.perf_counter()
    tables = {m: m._meta.db_table for m in (CodeSample, Instance, Verdict, RuleVerdict, Review)}
    with connection.cursor() as cur:
        _restore_secondary(cur)
        # A dedicated database: start from empty review data (catalog, users and sessions stay).
        cur.execute(
            "TRUNCATE curation_instance, curation_verdict, curation_ruleverdict, curation_review, "
            "curation_assignment, curation_instancerevision, curation_llmcall, curation_codesample, "
            "curation_selectionpick, curation_generationjob, curation_selectionrun, curation_codesource "
            "RESTART IDENTITY CASCADE"
        )
    ensure_catalog()
    User = get_user_model()
    users = {}
    for name, role in (("bench-reviewer", REVIEWER), ("bench-curator", CURATOR), ("bench-seed", REVIEWER)):
        users[name], _ = User.objects.get_or_create(username=name)
        grant(users[name], role)
    seed_reviewer = users["bench-seed"].pk
    tasks = list(CodeTask.objects.select_related("current_prompt", "current_principles").order_by("id"))
    source = CodeSource.objects.create(name="bench", kind="directory", location="/bench")
    selection = SelectionRun.objects.create(
        k=n, model_name="bench", status=SelectionRun.Status.SUCCEEDED, pool_size=n
    )
    jobs = [
        GenerationJob.objects.create(
            selection_run=selection,
            tasks=[t.slug for t in tasks],
            samples_per_task=n // 4,
            generator_model="bench-gen",
            discriminator_model="bench-judge",
            status=GenerationJob.Status.SUCCEEDED,
            overlap=2 if j == 9 else 1,  # one job asks for two reviewers per instance
        )
        for j in range(10)
    ]
    texts = _texts(rng)
    now = "2025-01-01 00:00:00+00"
    n_samples = (n + 3) // 4

    def samples() -> Iterator[str]:
        for s in range(1, n_samples + 1):
            v = texts[s % len(texts)]
            code = f"# sample {s}\\n" + v[4]
            digest = hashlib.sha256(code.encode()).hexdigest()
            lang = LANGUAGES[s % len(LANGUAGES)]
            yield (
                f"{s}\t{source.pk}\t{lang}\t{code}\t\tf{s}\tbench/repo\tsrc/m{s % 997}.py\t1\t12\tMIT"
                f"\t{len(code)}\t{digest}\t\t{now}\n"
            )

    checks = _escape(json.dumps([{"name": "output_parses", "passed": True, "detail": ""}]))
    checks_failed = _escape(json.dumps([{"name": "output_parses", "passed": False, "detail": "SyntaxError"}]))
    reviews: list[tuple[int, str]] = []

    def instances() -> Iterator[str]:
        for i in range(1, n + 1):
            s = (i - 1) // 4 + 1
            task = tasks[(i + s) % 4]  # the four instances of a sample: four different tasks
            r = rng.random()
            failed = r < 0.02
            passed = "\\N" if failed else ("t" if rng.random() < 0.7 else "f")
            v = texts[(i * 7) % len(texts)]
            lang = LANGUAGES[s % len(LANGUAGES)]
            target = "java" if task.slug == "translation" else ""
            review_status, human = "unreviewed", "\\N"
            if not failed and r > 0.97:  # about 3% decided earlier by someone else
                human = "accept" if r > 0.98 else "reject"
                review_status = "accepted" if human == "accept" else "rejected"
                reviews.append((i, human))
            if not failed:
                judged.append((i, task.pk, passed == "t"))
            yield "\t".join(
                (
                    str(i), str(jobs[rng.randrange(10)].pk), str(s), str(task.pk),
                    str(task.current_prompt_id),
                    "bench-gen", "0", "failed" if failed else "done", "llm_error" if failed else "judged",
                    "\\N", "", "1", "LLM call failed" if failed else "", lang, target,
                    v[0], v[1], v[2], "", v[3], "", checks_failed if passed == "f" else checks,
                    "", "passed" if passed == "t" else "failed", "", "\\N" if failed else str(i), passed,
                    now, now, "0", review_status, human, "\\N",
                )
            ) + "\n"  # fmt: skip

    judged: list[tuple[int, int, bool]] = []  # (instance id, task id, passed), filled by instances()

    def verdicts() -> Iterator[str]:
        for i, task_id, passed in judged:  # verdict id = instance id
            reasons = "All rules satisfied." if passed else "Fails some rules; see the rule verdicts."
            principles = by_id[task_id].current_principles_id
            yield f"{i}\t{i}\t{principles}\tbench-judge\t{'t' if passed else 'f'}\t{reasons}\t\t{now}\n"

    by_id = {t.pk: t for t in tasks}
    rule_text = {t.pk: [(r["id"], _escape(r["question"])) for r in t.current_principles.rules] for t in tasks}
    reason_ok = "The output meets this rule: " + "the instruction, input and output agree with it. " * 3
    reason_bad = "The output breaks this rule: " + "it does not do what the rule asks, see the output. " * 3

    def rules() -> Iterator[str]:
        k = 0
        for i, task_id, passed in judged:
            pairs = rule_text[task_id]
            bad = set() if passed else set(rng.sample(range(len(pairs)), rng.choice((1, 1, 2))))
            for j, (rule_id, question) in enumerate(pairs):
                k += 1
                ok = j not in bad
                reason = reason_ok if ok else reason_bad
                yield f"{k}\t{i}\t{rule_id}\t{question}\t{'t' if ok else 'f'}\t{reason}\n"

    def review_rows() -> Iterator[str]:
        for k, (i, decision) in enumerate(reviews, start=1):
            reason = "" if decision == "accept" else "Output does not match the instruction."
            yield f"{k}\t{i}\t{seed_reviewer}\t{decision}\t{reason}\t[]\t\\N\tf\t{now}\n"

    with connection.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        _drop_secondary(cur, list(tables.values()))
        raw = cur.cursor  # psycopg's own cursor, in autocommit: each COPY commits by itself
        # Rows are consistent by construction: skip the FK triggers during the load.
        raw.execute("SET session_replication_role = replica")
        raw.execute("SET synchronous_commit = off")
        steps = [
            ("code samples", tables[CodeSample],
             "id, source_id, language, code, docstring, func_name, repo, path, start_line, end_line, "
             "license, n_chars, content_hash, minhash, created_at", samples),
            ("instances", tables[Instance],
             "id, job_id, sample_id, task_id, prompt_version_id, generator_model, sample_index, status, "
             "stage, lease_until, claim_token, attempts, failure, language, target_language, instruction, "
             "input, output, explanation, tests, raw_response, checks, failed_check, execution_status, "
             "execution_detail, verdict_id, passed, created_at, finished_at, version, review_status, "
             "human_decision, current_revision_id", instances),
            ("verdicts", tables[Verdict],
             "id, instance_id, principle_version_id, model, passed, reasons, raw_response, created_at",
             verdicts),
            ("rule verdicts", tables[RuleVerdict], "id, verdict_id, rule_id, question, passed, reason",
             rules),
            ("reviews", tables[Review],
             "id, instance_id, reviewer_id, decision, reason, broken_rules, revision_id, is_resolution, "
             "created_at", review_rows),
        ]  # fmt: skip
        for label, table, columns, rows in steps:
            t = time.perf_counter()
            with _copy(raw, table, columns) as copy:
                _stream(copy, rows())
            timings[f"copy {label}"] = time.perf_counter() - t
            print(f"  copied {label} in {timings[f'copy {label}']:.1f}s", flush=True)
        raw.execute("SET session_replication_role = origin")
    t = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        _restore_secondary(cur)
        for model in (CodeSample, Instance, Verdict, RuleVerdict, Review):
            table = model._meta.db_table
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    timings["indexes"] = time.perf_counter() - t
    t = time.perf_counter()
    with connection.cursor() as cur:
        for table in tables.values():
            cur.execute(f"VACUUM (ANALYZE) {table}")  # visibility map for index-only scans, and statistics
    timings["vacuum analyze"] = time.perf_counter() - t
    timings["load total"] = time.perf_counter() - t0
    return timings


# --- Measurements --------------------------------------------------------------------------------


class SqlLog:
    """Counts and times the SQL of each request (Django's execute_wrapper), keeping the statements."""

    def __init__(self) -> None:
        self.queries: list[tuple[float, str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append(((time.perf_counter() - t) * 1000, sql, params))


_PANE = re.compile(rb'data-instance="(\d+)" data-version="(\d+)"')


def _current(response) -> tuple[int, int] | None:
    match = _PANE.search(response.content)
    return (int(match[1]), int(match[2])) if match else None


class Bench:
    def __init__(self, reps: int) -> None:
        from django.db import connection

        self.reps, self.connection = reps, connection
        self.results: list[dict] = []
        self.slow_sql: dict[str, tuple[float, str, object]] = {}

    @contextmanager
    def timed(self, label: str, sink: list):
        log = SqlLog()
        with self.connection.execute_wrapper(log):
            t = time.perf_counter()
            yield
            ms = (time.perf_counter() - t) * 1000
        sink.append((ms, len(log.queries), sum(q[0] for q in log.queries)))
        worst = max(log.queries, default=None, key=lambda q: q[0])
        if worst and worst[0] > self.slow_sql.get(label, (0,))[0]:
            self.slow_sql[label] = worst

    def record(self, label: str, samples: list[tuple[float, int, float]]) -> None:
        ms = sorted(s[0] for s in samples)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        self.results.append(
            {
                "label": label,
                "n": len(ms),
                "p50": statistics.median(ms),
                "p95": p95,
                "max": ms[-1],
                "queries": statistics.median(s[1] for s in samples),
                "sql_p50": statistics.median(s[2] for s in samples),
            }
        )
        r = self.results[-1]
        print(f"  {label:<44} p50 {r['p50']:7.1f}  p95 {p95:7.1f}  max {r['max']:7.1f} ms", flush=True)

    def repeat(self, label: str, request) -> None:
        """Time `request()` reps times (after two untimed warm-ups)."""
        for _ in range(2):
            request()
        samples: list = []
        for _ in range(self.reps):
            with self.timed(label, samples):
                response = request()
            assert response.status_code == 200, (label, response.status_code)
        self.record(label, samples)

    def review_flow(self, client, filters: dict[str, str], suffix: str = "", htmx: bool = False) -> None:
        """Accept, then load the next instance, reps times; with htmx the accept's response is the next
        instance's pane (one request)."""
        from django.urls import reverse

        query = "?" + urlencode(filters) if filters else ""
        page = reverse("review") + query
        current = _current(client.get(page))
        accepts: list = []
        nexts: list = []
        for _ in range(self.reps):
            if current is None:
                break
            pk, version = current
            url = reverse("review-action", args=[pk, "accept"]) + query
            headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
            with self.timed(f"accept{suffix}", accepts):
                response = client.post(url, {"expected_version": version}, **headers)
            assert response.status_code in (200, 302), response.status_code
            if htmx:
                current = _current(response)
                continue
            with self.timed(f"next instance{suffix}", nexts):
                response = client.get(page)
            assert response.status_code == 200
            current = _current(response)
        self.record(f"accept{suffix}", accepts)
        if nexts:
            self.record(f"next instance{suffix}", nexts)

    def explain(self, label: str) -> str:
        """EXPLAIN ANALYZE of the slowest statement seen in a request (in a rolled-back transaction)."""
        from django.db import transaction

        ms, sql, params = self.slow_sql[label]
        with transaction.atomic(), self.connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cur.fetchall())
            transaction.set_rollback(True)
        return f"-- {label}: slowest query, {ms:.1f} ms\n{sql}\n{params}\n{plan}"


def measure(reps: int) -> Bench:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from curation import review
    from curation.models import CodeTask

    setup_test_environment()  # 'testserver' in ALLOWED_HOSTS
    User = get_user_model()
    reviewer, curator = (User.objects.get(username=u) for u in ("bench-reviewer", "bench-curator"))
    review.release(reviewer)
    bench = Bench(reps)
    rev, cur = Client(), Client()
    rev.force_login(reviewer)
    cur.force_login(curator)
    rule = CodeTask.objects.get(slug="generation").current_principles.rules[0]["id"]

    bench.repeat("review page (reload, held instance)", lambda: rev.get(reverse("review")))
    bench.review_flow(rev, {})
    bench.review_flow(rev, {}, " + next pane (htmx)", htmx=True)
    bench.review_flow(rev, {"verdict": "fail", "rule": rule}, " [verdict=fail, rule]")
    lists = {
        "": {},
        "task": {"task": "generation"},
        "verdict=fail": {"verdict": "fail"},
        "rule": {"rule": rule},
        "q": {"q": SEARCH_TERMS[0]},
        "task+verdict+rule": {"task": "generation", "verdict": "fail", "rule": rule},
    }
    for name, filters in lists.items():
        url = reverse("review-list") + ("?" + urlencode(filters) if filters else "")
        bench.repeat(f"list + filter counts [{name or 'no filter'}]", lambda url=url: cur.get(url))
    review.release(reviewer)
    return bench


def row_counts() -> dict[str, int]:
    from django.db import connection

    from curation.models import CodeSample, Instance, Review, RuleVerdict, Verdict

    counts = {}
    with connection.cursor() as cur:
        for model in (Instance, Verdict, RuleVerdict, CodeSample, Review):
            cur.execute(f"SELECT count(*) FROM {model._meta.db_table}")
            counts[model.__name__] = cur.fetchone()[0]
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        counts["database size"] = cur.fetchone()[0]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="instances to load")
    parser.add_argument("--reps", type=int, default=100, help="timed requests per measurement")
    parser.add_argument("--reuse", action="store_true", help="skip loading when the instances are there")
    parser.add_argument("--db-url", default="postgres://postgres@127.0.0.1:5432/wavecoder_bench")
    args = parser.parse_args()

    _ensure_database(args.db_url)
    _setup_django(args.db_url)
    from curation.models import Instance

    have = Instance.objects.count()
    if args.reuse and have >= args.n:
        print(f"reusing {have:,} instances")
    else:
        print(f"loading {args.n:,} instances ...", flush=True)
        for step, seconds in load(args.n, args.db_url).items():
            print(f"  {step:<24} {seconds:7.1f} s")
    counts = row_counts()
    print("rows: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items()))
    print(f"measuring, {args.reps} requests each ...", flush=True)
    bench = measure(args.reps)

    print(f"\n{'request (server side, Django test client)':<46}{'n':>5}{'p50':>9}{'p95':>9}{'max':>9}"
          f"{'queries':>9}{'SQL p50':>9}  target p95 < {TARGET_MS:.0f} ms")  # fmt: skip
    for r in bench.results:
        ok = "ok" if r["p95"] < TARGET_MS else "MISSED"
        print(
            f"{r['label']:<46}{r['n']:>5}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['max']:>9.1f}"
            f"{r['queries']:>9.0f}{r['sql_p50']:>9.1f}  {ok}"
        )
    missed = [r["label"] for r in bench.results if r["p95"] >= TARGET_MS]
    for label in missed:
        print("\n" + bench.explain(label))


if __name__ == "__main__":
    main()
