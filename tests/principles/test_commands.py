"""Management commands: agreement, refine_principles, adopt_principles, rejudge."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.models import CodeTask, RefinementRun, RejudgeJob
from tests.fakes.openai_stub import OpenAIStub
from tests.review.factory import make_instance, make_job

from .stub import combined, proposer, strict_judge


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_agreement_command(decided):
    a, _ = decided
    text = _run("agreement", "--task", "generation")
    assert "n=6" in text and "agreement 33%" in text and a in text
    data = json.loads(_run("agreement", "--task", "generation", "--json"))
    assert data[0]["confusion"]["false_reject"] == 3
    with pytest.raises(CommandError, match="No task"):
        _run("agreement", "--task", "nope")


def test_refine_adopt_rollback_and_rejudge_commands(decided, settings, tmp_path):
    a, _ = decided
    task = CodeTask.objects.get(slug="generation")
    v1 = task.current_principles
    unreviewed = make_instance(make_job(), passed=False, failed_rules=(a,))
    with OpenAIStub(responder=combined(strict_judge(a), proposer(a))) as stub:
        settings.OPENAI_BASE_URL = stub.base_url
        rules = tmp_path / "rules.txt"
        rules.write_text("\n".join(f"{r['id']}: {r['question']}" for r in v1.rules[1:]), encoding="utf-8")
        text = _run(
            "refine_principles",
            "--task",
            "generation",
            "--heldout",
            "0.5",
            "--seed",
            "3",
            "--rules-file",
            str(rules),
            "--adopt",
        )
        assert f"- {a}:" in text and "Held-out check" in text and "Adopted principles v" in text
        task.refresh_from_db()
        assert task.current_principles != v1 and a not in [r["id"] for r in task.current_principles.rules]
        assert RefinementRun.objects.get().stage == RefinementRun.Stage.ADOPTED

        text = _run("rejudge", "--tasks", "generation")
        assert "1 judged, 1 flipped" in text
        unreviewed.refresh_from_db()
        assert unreviewed.verdict.principle_version == task.current_principles
        assert RejudgeJob.objects.get().status == RejudgeJob.Status.SUCCEEDED
        with pytest.raises(CommandError, match="No unreviewed instance"):
            _run("rejudge", "--tasks", "generation")

    listing = _run("adopt_principles", "--task", "generation")
    assert f"* v{task.current_principles.version}" in listing and f"  v{v1.version}" in listing
    made = _run("adopt_principles", "--task", "generation", "--make-current", str(v1.version))
    assert "current now" in made
    task.refresh_from_db()
    assert task.current_principles == v1
    with pytest.raises(CommandError, match="no principles v99"):
        _run("adopt_principles", "--task", "generation", "--make-current", "99")


def test_refine_command_errors(db):
    with pytest.raises(CommandError, match="--task"):
        _run("refine_principles")
    with pytest.raises(CommandError, match="no disagreements"):
        _run("refine_principles", "--task", "generation")
    with pytest.raises(CommandError, match="No refinement run"):
        _run("refine_principles", "--run", "42")
