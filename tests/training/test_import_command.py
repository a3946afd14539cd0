"""`manage.py import_instances FILE`: what it prints, and that a bad file imports nothing."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from curation.models import GenerationJob, Instance
from tests.fakes.openai_stub import OpenAIStub
from tests.fakes.responders import responder

pytestmark = pytest.mark.django_db
ROWS = [
    {
        "instruction": "Write a Python function that adds two numbers.",
        "output": "def add(a, b):\n    return a + b",
    },
    {
        "instruction": "Fix the bug.",
        "input": "def inc(x):\n    return x - 1",
        "output": "def inc(x):\n    return x + 1",
    },
]


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_instances", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_imports_and_summarizes(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    out, _ = run(str(path), "--language", "python")
    job = GenerationJob.objects.get()
    assert f"Import #{job.pk}: 2 instances from alpaca.jsonl (jsonl); 0 exact repeats skipped." in out
    assert "tasks: generation 1, repair 1" in out and f"/review/?job={job.pk}" in out


def test_a_bad_file_prints_its_lines_and_imports_nothing(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps(ROWS[0]) + "\n{oops\n" + json.dumps({"instruction": "x", "output": None}) + "\n"
    )
    with pytest.raises(CommandError, match="Nothing was imported"):
        run(str(path))
    assert not Instance.objects.exists()
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_instances", str(path), stderr=out)
    assert (
        "line 2: invalid JSON" in out.getvalue()
        and "line 3: field 'output' must be a string, got null" in out.getvalue()
    )
    stdout, _ = run(str(path), "--valid-only", "--task", "generation")
    assert "2 bad lines skipped" in stdout and Instance.objects.count() == 1


def test_a_file_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as handle:
        handle.truncate(3 * 1024 * 1024)
    with pytest.raises(CommandError):
        run(str(path), "--max-mb", "2")
    with pytest.raises(CommandError, match="Cannot read"):
        run(str(tmp_path / "missing.jsonl"))


def test_judge_runs_the_discriminator_inline(tmp_path, settings):
    path = tmp_path / "judge.json"
    path.write_text(json.dumps(ROWS))
    with OpenAIStub(responder=responder) as server:
        settings.OPENAI_BASE_URL = server.base_url
        settings.OPENAI_API_KEY = "test"
        out, _ = run(str(path), "--judge", "--discriminator-model", "stub")
    assert "judged: 2 done, 0 failed (succeeded)" in out
    assert set(Instance.objects.values_list("stage", flat=True)) == {Instance.Stage.JUDGED}
