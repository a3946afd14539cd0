"""Importing existing instruction data (Alpaca, ShareGPT; CodeAlpaca, Evol-Instruct, Magicoder files) as
instances to judge and review, and what a bad file gets: a line-numbered error list, nothing imported."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from curation import generation, imports, review
from curation.imports import ImportFileError, import_instances, infer_language, infer_task, read_file
from curation.llm import OpenAICompatibleClient
from curation.models import GenerationJob, Instance, LLMCall
from tests.fakes.openai_stub import OpenAIStub
from tests.fakes.responders import is_discriminator, responder

CODEALPACA = [
    {"instruction": "Create a function to calculate the sum of a sequence of integers.", "input": "[1, 2, 3]",
     "output": "def sum_sequence(sequence):\n    total = 0\n    for number in sequence:\n"
               "        total += number\n    return total"},
    {"instruction": "Fix the bug in the following Python code.", "input": "def inc(x):\n    return x - 1",
     "output": "def inc(x):\n    return x + 1"},
    {"instruction": "Explain what this code does.", "input": "print(sorted(set(words)))",
     "output": "It prints the distinct words in alphabetical order."},
]  # fmt: skip
MAGICODER = {
    "lang": "rust",
    "problem": "Write a Rust function that reverses a string.",
    "solution": "fn reverse(s: &str) -> String {\n    s.chars().rev().collect()\n}",
    "seed": "…",
}
EVOL = {
    "instruction": "Translate this Java method to Python.",
    "response": "```python\ndef f():\n    pass\n```",
}
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "You are a helpful assistant."},
        {"from": "human", "value": "Write a Go function that adds two integers."},
        {"from": "gpt", "value": "```go\nfunc add(a, b int) int { return a + b }\n```"},
    ]
}
MESSAGES = {
    "messages": [
        {"role": "user", "content": "Write a JavaScript function that squares a number."},
        {"role": "assistant", "content": "const square = (x) => x * x;"},
    ]
}


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# --- Formats -----------------------------------------------------------------------------------------------


def test_an_alpaca_json_array_becomes_instances_ready_for_review(db, tmp_path, reviewer):
    path = tmp_path / "code_alpaca_20k.json"
    path.write_text(json.dumps(CODEALPACA, indent=2))

    job = import_instances(path)

    assert (job.kind, job.status, job.selection_run_id) == (GenerationJob.Kind.IMPORT, "succeeded", None)
    rows = list(job.instances.order_by("id"))
    assert [r.task.slug for r in rows] == ["generation", "repair", "summarization"]
    assert [r.source for r in rows] == [
        "code_alpaca_20k.json:2",
        "code_alpaca_20k.json:7",
        "code_alpaca_20k.json:12",
    ]
    assert all(r.sample_id is None and r.status == Instance.Status.DONE and r.passed is None for r in rows)
    assert (rows[0].instruction, rows[0].input, rows[0].output) == tuple(CODEALPACA[0].values())
    assert rows[1].language == "python"
    report = job.report
    assert report["format"] == "json" and report["imported"] == 3 and report["task_from"] == {"inferred": 3}
    assert report["tasks"] == {"generation": 1, "repair": 1, "summarization": 1}
    # They are in the review queue like generated instances, and a reviewer can accept them.
    assert set(review.reviewable().filter(job=job)) == set(rows)
    held = review.next_instance(reviewer, {"job": str(job.pk)})
    review.accept(held, reviewer, expected_version=held.version)
    assert Instance.objects.get(pk=held.pk).review_status == Instance.ReviewStatus.ACCEPTED


def test_sharegpt_messages_magicoder_and_evol_records_in_json_lines(db, tmp_path):
    path = jsonl(tmp_path / "mixed.jsonl", [SHAREGPT, MESSAGES, MAGICODER, EVOL])
    job = import_instances(path)
    rows = list(job.instances.order_by("id"))
    assert [(r.instruction.split()[1], r.language, r.task.slug) for r in rows] == [
        ("a", "go", "generation"),
        ("a", "javascript", "generation"),
        ("a", "rust", "generation"),
        ("this", "java", "translation"),
    ]
    assert rows[0].output.startswith("```go") and rows[2].output == MAGICODER["solution"]
    assert rows[3].target_language == "python"  # translation: the instance's language is the source
    assert [r.source for r in rows] == [f"mixed.jsonl:{n}" for n in (1, 2, 3, 4)]
    assert job.report["format"] == "jsonl"


def test_the_task_can_be_set_or_read_from_the_record(db, tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [dict(CODEALPACA[0], task="repair"), CODEALPACA[1]])
    job = import_instances(path)
    assert [i.task.slug for i in job.instances.order_by("id")] == ["repair", "repair"]
    assert job.report["task_from"] == {"record": 1, "inferred": 1}
    job = import_instances(path, task="summarization", language="Python 3")
    assert {(i.task.slug, i.language) for i in job.instances.all()} == {("summarization", "python")}
    assert job.report["task_from"] == {"set": 2}


def test_exact_repeats_are_skipped_and_counted(db, tmp_path):
    job = import_instances(jsonl(tmp_path / "d.jsonl", [CODEALPACA[0], CODEALPACA[1], CODEALPACA[0]]))
    assert job.instances.count() == 2 and job.report["duplicates"] == 1


def test_only_the_first_exchange_of_a_conversation_is_imported_and_that_is_noted(db, tmp_path):
    conversation = {
        "conversations": [
            {"from": "human", "value": "Write a Python function that adds."},
            {"from": "gpt", "value": "def add(a, b):\n    return a + b"},
            {"from": "human", "value": "Now make it subtract."},
            {"from": "gpt", "value": "def sub(a, b):\n    return a - b"},
        ]
    }
    job = import_instances(jsonl(tmp_path / "c.jsonl", [conversation]))
    assert job.instances.get().output == "def add(a, b):\n    return a + b"
    assert job.report["notes"] == {"multi-turn conversations: only the first exchange imported": 1}


@pytest.mark.parametrize(
    ("instruction", "input_", "output", "task"),
    [
        ("Convert the following Java code to Python.", "", "def f(): pass", "translation"),
        ("Rewrite this function in Rust.", "def add(a, b):\n    return a + b", "fn add() {}", "translation"),
        ("Write a function to convert Celsius to Fahrenheit in Python.", "", "def c2f(c): ...", "generation"),
        ("Debug the given code and explain the error.", "x = [1, 2", "x = [1, 2]", "repair"),
        ("Find and fix the bug.", "", "return a + b", "repair"),
        ("Summarize what this function does.", "def f(): pass", "It does nothing.", "summarization"),
        ("Write documentation for the given code.", "", "Adds numbers.", "summarization"),
        (
            "Explain with an example how to sort a dict.",
            "",
            "```python\nsorted(d.items())\n```",
            "generation",
        ),
        ("Write a Python program to go through a list.", "", "for x in xs: print(x)", "generation"),
        ("Create a SQL query that lists users.", "", "SELECT * FROM users;", "generation"),
    ],
)
def test_tasks_are_inferred_from_the_instruction(instruction, input_, output, task):
    assert infer_task(instruction, input_, output) == task


@pytest.mark.parametrize(
    ("instruction", "input_", "output", "task", "language"),
    [
        ("Write a function.", "", "```cpp\nint f();\n```", "generation", "cpp"),
        ("Write a C# method that adds.", "", "int Add() {}", "generation", "csharp"),
        ("Write code in Go.", "", "func f() {}", "generation", "go"),
        ("Write a program to go through a list.", "", "for x in xs: print(x)", "generation", ""),
        ("Translate this Java code into Python.", "", "```python\npass\n```", "translation", "java"),
        ("Convert to TypeScript.", "```js\nlet x = 1\n```", "let x: number = 1", "translation", "javascript"),
    ],
)
def test_languages_are_read_from_fences_and_names(instruction, input_, output, task, language):
    assert infer_language(instruction, input_, output, task=task) == language


# --- Bad input ---------------------------------------------------------------------------------------------


def test_a_file_with_errors_imports_nothing_and_lists_every_bad_line(db, tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(CODEALPACA[0])
    path.write_bytes(
        "\n".join(
            [
                good,
                '{"instruction": "Add.", "output": "x"',  # 2: truncated JSON
                "[1, 2]",  # 3: not an object
                json.dumps({"instruction": "No answer."}),  # 4: missing field
                json.dumps({"instruction": "Typed.", "output": 42}),  # 5: wrong type
                json.dumps({"instruction": "   ", "output": "x"}),  # 6: empty
                json.dumps({"instruction": "Odd.", "output": "x", "task": "cooking"}),  # 7: unknown task
                json.dumps({"conversations": [{"from": "human", "value": "Hi"}]}),  # 8: no answer
                "",  # 9: blank lines are fine
                json.dumps({"instruction": "Input typed.", "input": ["a"], "output": "x"}),  # 10
            ]
        ).encode()
        + b'\n{"instruction": "caf\xe9", "output": "x"}\n'  # 11: Latin-1, not UTF-8
    )
    with pytest.raises(ImportFileError) as info:
        import_instances(path)
    assert [e.split(":")[0] for e in info.value.errors] == [
        f"line {n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 11)
    ]
    message = str(info.value)
    assert message.startswith("bad.jsonl: 9 problems:")
    assert "line 2: invalid JSON: Expecting ',' delimiter (column 38)" in message
    assert "line 3: expected a JSON object, got array" in message
    assert "line 4: missing field 'output' (or one of response, solution, completion, answer)" in message
    assert "line 5: field 'output' must be a string, got int" in message
    assert "line 6: field 'instruction' is empty" in message
    assert "line 7: unknown task 'cooking'" in message
    assert "line 8: 'conversations' has no assistant turn after the first user turn" in message
    assert "line 10: field 'input' must be a string, got array" in message
    assert "line 11: not valid UTF-8 (byte 0xe9 at column 21)" in message
    assert not GenerationJob.objects.exists() and not Instance.objects.exists()

    # Asked to, it imports the valid lines and keeps the error list in the job's report.
    job = import_instances(path, valid_only=True)
    assert job.instances.count() == 1
    assert job.report["error_count"] == 9 and job.report["errors"][0].startswith("line 2: invalid JSON")


def test_json_array_errors_are_located_too(db, tmp_path):
    path = tmp_path / "array.json"
    path.write_text('[\n  {"instruction": "A.", "output": "a"},\n  {"instruction": "B.", "output": 7},\n'
                    '  {"instruction": "C." "output": "c"}\n]')  # fmt: skip
    parsed = read_file(path)
    assert parsed.errors == [
        "line 3: field 'output' must be a string, got int",
        "line 4: invalid JSON: Expecting ',' delimiter (column 24); the rest was not read",
    ]
    assert len(parsed.records) == 1
    path.write_bytes(b'[\n {"instruction": "A.", "output": "a"},\n {"instruction": "\xff", "output": "b"}\n]')
    assert read_file(path).errors == ["line 3: not valid UTF-8 (byte 0xff at column 19); nothing read"]
    path.write_text('[{"instruction": "A.", "output": "a"}] trailing')
    assert read_file(path).errors == ["line 1: invalid JSON: text after the closing ]"]
    path.write_text("[]")
    with pytest.raises(ImportFileError, match="holds no instruction records"):
        import_instances(path)


def test_a_100_mb_file_is_refused_before_it_is_read(db, tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as handle:  # 100 MB, sparse: reading it would show in the time taken
        handle.truncate(100 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(ImportFileError) as info:
        import_instances(path)
    assert time.perf_counter() - started < 1
    assert info.value.errors == [
        "the file is 100.0 MB, over the 64 MB limit; nothing was read (split it, or import it with "
        "`manage.py import_instances FILE --max-mb N`)"
    ]
    assert not Instance.objects.exists()


def test_a_very_long_line_is_an_error_not_a_crash(db, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "MAX_RECORD_BYTES", 1024)
    path = jsonl(tmp_path / "long.jsonl", [{"instruction": "x" * 5000, "output": "y"}, CODEALPACA[0]])
    parsed = read_file(path)
    assert parsed.errors == ["line 1: longer than 1,024 bytes; skipped"] and len(parsed.records) == 1


# --- Judging -----------------------------------------------------------------------------------------------


def test_an_import_with_judge_goes_to_the_discriminator_and_skips_the_generator(db, tmp_path):
    path = jsonl(tmp_path / "j.jsonl", CODEALPACA)
    job = import_instances(path, judge=True, discriminator_model="stub-judge")
    assert job.status == GenerationJob.Status.QUEUED
    assert set(job.instances.values_list("status", flat=True)) == {Instance.Status.PENDING}

    seen: list[bool] = []

    def judge_only(request):
        seen.append(is_discriminator(request))
        return responder(request)

    with OpenAIStub(responder=judge_only) as server:
        client = OpenAICompatibleClient(server.base_url, timeout=5, max_retries=1, backoff_base=0.01)
        job = generation.run_generation(job.pk, client=client)

    assert job.status == GenerationJob.Status.SUCCEEDED
    assert seen == [True, True, True]  # three judgements, no generation
    rows = list(job.instances.select_related("verdict"))
    assert all(r.status == Instance.Status.DONE and r.stage == Instance.Stage.JUDGED for r in rows)
    assert all(r.passed and r.verdict.model == "stub-judge" for r in rows)
    assert [r.output for r in sorted(rows, key=lambda r: r.pk)] == [c["output"] for c in CODEALPACA]
    assert LLMCall.objects.filter(job=job, role=LLMCall.Role.GENERATOR).count() == 0


def test_start_import_queues_the_judge_after_commit(
    db, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    from curation import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.run_generation_job, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        job = imports.start_import(jsonl(tmp_path / "q.jsonl", CODEALPACA[:1]), judge=True)
        plain = imports.start_import(jsonl(tmp_path / "p.jsonl", CODEALPACA[1:]))
    assert queued == [job.pk] and plain.status == GenerationJob.Status.SUCCEEDED


def test_pages_show_where_an_imported_instance_came_from(db, tmp_path, client, curator):
    job = import_instances(jsonl(tmp_path / "alpaca.jsonl", CODEALPACA[:1]))
    instance = job.instances.get()
    client.force_login(curator)
    page = client.get(f"/generation/{job.pk}/").content.decode()
    assert "Imported from <code>alpaca.jsonl</code>" in page
    page = client.get(f"/instances/{instance.pk}/").content.decode()
    assert 'Imported <span class="muted">(alpaca.jsonl:1)</span>' in page
    page = client.get(f"/review/?job={job.pk}").content.decode()
    assert "(alpaca.jsonl:1)" in page and "Create a function to calculate the sum" in page
