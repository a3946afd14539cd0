"""`manage.py export_dataset`: build a version from the shell (or take a built one) and write its files."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from tests.training.dataset_factory import humaneval_leaks, make_accepted, make_clean
from training.datasets import build_version, create_version
from training.models import Benchmark, DatasetVersion

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("export_dataset", *args, stdout=out)
    return out.getvalue()


def test_it_builds_a_version_with_filters_and_writes_the_chosen_formats(reviewer, tmp_path):
    make_clean(reviewer)
    make_accepted(reviewer, task="repair", instruction="Fix it.", output="def f():\n    return 1")
    make_accepted(reviewer, instruction="Write a Python function.", output=humaneval_leaks()["verbatim"])
    out = run(
        "--tasks", "generation", "--reviewers", "rita", "--accepted-from", "2020-01-01",
        "--mix", "generation=1", "--no-embeddings", "--name", "Shell", "--format", "alpaca,card",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    version = DatasetVersion.objects.get()
    assert (version.name, version.tasks, version.use_embeddings) == ("Shell", ["generation"], False)
    assert "Dataset v1: 6 instances of 7 accepted; 1 left out for leaking a benchmark" in out
    assert str(tmp_path / "out" / "alpaca.json") in out and "decontaminating" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "alpaca.json"]
    assert len(json.loads((tmp_path / "out" / "alpaca.json").read_text())) == 6


def test_it_exports_a_built_version_again_and_adds_benchmark_files(reviewer, tmp_path):
    make_clean(reviewer)
    bench = tmp_path / "mine.jsonl"
    bench.write_text(
        json.dumps({"text": "Parse a key=value line.", "code": "def p(l): return l.split('=')"}) + "\n"
    )
    run("--benchmark-file", str(bench), "--benchmark", "HumanEval", "--no-embeddings")
    version = DatasetVersion.objects.get()
    assert sorted(version.benchmarks.values_list("name", flat=True)) == ["HumanEval", "mine"]
    (version.folder / "messages.jsonl").unlink()
    out = run("--dataset-version", "1", "--format", "messages")  # a missing file is written again
    assert (version.folder / "messages.jsonl").exists() and version.content_hash in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset-version", "9"], "No dataset version 9"),
        (["--format", "csv"], "Unknown format csv"),
        (["--reviewers", "nobody-here"], "No user named nobody-here"),
        (["--accepted-from", "yesterday"], "Dates are YYYY-MM-DD"),
        (["--mix", "cooking=1"], "Unknown task in the mix"),
        (["--benchmark", "MBPP"], "No benchmark named 'MBPP'"),
        (["--no-embeddings"], "failed: No accepted instance matches"),
    ],
)
def test_bad_arguments_are_command_errors(args, message):
    Benchmark.humaneval()
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_an_unbuilt_version_cannot_be_exported(db):
    version = create_version(use_embeddings=False)
    with pytest.raises(CommandError, match=f"Dataset v{version.number} is queued"):
        run("--dataset-version", str(version.number))
    assert build_version(version.pk).status == DatasetVersion.Status.FAILED
