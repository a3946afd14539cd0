"""The shell commands: ingest, select_coreset and generate (against any OpenAI-compatible endpoint)."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.models import CodeSample, GenerationJob, Instance, SelectionRun
from tests.fakes.openai_stub import OpenAIStub
from tests.fakes.responders import responder

from .corpus_factory import write_package
from .pipeline_factory import make_selection


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_ingest_command_prints_progress_and_report(db, tmp_path):
    output = _run("ingest", str(write_package(tmp_path / "pkg")), "--min-chars", "20")
    assert "extracting" in output and "100.0%" in output
    assert f"kept {CodeSample.objects.count()} samples" in output
    assert "kept python:" in output


def test_ingest_command_reports_a_missing_source(db, tmp_path):
    with pytest.raises(CommandError, match="does not exist|not found|No such"):
        _run("ingest", str(tmp_path / "nowhere"))


def test_ingest_command_refuses_bad_options(db, tmp_path):
    with pytest.raises(CommandError, match="min_chars"):
        _run("ingest", str(write_package(tmp_path / "pkg")), "--min-chars", "900", "--max-chars", "100")


def test_select_coreset_command_with_the_real_embedder(db, tmp_path):
    _run("ingest", str(write_package(tmp_path / "pkg")), "--min-chars", "20")
    output = _run("select_coreset", "--k", "3", "--seed", "1")
    run = SelectionRun.objects.get()
    assert run.status == SelectionRun.Status.SUCCEEDED
    assert f"picked 3 of {run.pool_size}" in output
    assert "coverage radius" in output


def test_select_coreset_command_refuses_k_above_the_pool(db, tmp_path):
    _run("ingest", str(write_package(tmp_path / "pkg")), "--min-chars", "20")
    with pytest.raises(CommandError):
        _run("select_coreset", "--k", "10000")


def test_generate_command_runs_against_an_openai_compatible_server(db, settings):
    make_selection()
    with OpenAIStub(responder=responder) as stub:
        settings.OPENAI_BASE_URL = stub.base_url
        output = _run("generate", "--tasks", "generation,repair", "--samples", "2", "--no-execute")
        assert stub.count == 8
    job = GenerationJob.objects.get()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert Instance.objects.filter(status="done").count() == 4
    assert "4 judged, 0 failed" in output
    assert "tokens" in output


def test_generate_command_without_a_selection_says_what_to_do(db):
    with pytest.raises(CommandError, match="select_coreset"):
        _run("generate")
