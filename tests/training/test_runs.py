"""Training and evaluation runs through their stage functions (training/runs.py): checks before anything
is queued, a tiny model trained in a real subprocess, failures with their messages, resume from a
checkpoint, and an evaluation of base against tuned."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.training.run_factory import build_version_for_training
from tests.training.tiny_model import build_tiny_model
from training import finetune, runs
from training.models import DatasetVersion, EvaluationRun, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def built_version(reviewer):
    return build_version_for_training(reviewer)


# Seconds on two cores: a high learning rate, a batch of 2, a few steps.
TINY = {
    "learning_rate": 5e-3,
    "max_steps": 2,
    "max_length": 256,
    "warmup_steps": 0,
    "global_batch_size": 2,
    "per_device_batch_size": 2,
    "save_steps": 2,
    "bf16": "off",
    "gradient_checkpointing": False,
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.ARTIFACTS_DIR


def _run(version, model, **overrides) -> TrainingRun:
    return runs.create_training_run(dataset_version=version, base_model=str(model), **{**TINY, **overrides})


# --- Checks before anything is queued ---------------------------------------------------------------


def test_every_problem_is_listed_before_a_run_is_saved(built_version, tiny_model, artifacts):
    with pytest.raises(runs.RunError) as info:
        runs.create_training_run(
            dataset_version=built_version,
            base_model=str(tiny_model),
            global_batch_size=10,
            per_device_batch_size=4,
            lora_r=8,
            learning_rate=0,
        )
    text = " | ".join(info.value.errors)
    assert "not a multiple of the batch per device" in text
    assert "lora_r apply only to method 'lora'" in text
    assert "learning rate must be positive" in text
    assert TrainingRun.objects.count() == 0


def test_a_version_that_is_not_built_or_is_empty_is_refused(built_version, tiny_model, artifacts):
    DatasetVersion.objects.filter(pk=built_version.pk).update(status="running")
    built_version.refresh_from_db()
    with pytest.raises(runs.RunError, match="is not built"):
        _run(built_version, tiny_model)
    DatasetVersion.objects.filter(pk=built_version.pk).update(status="succeeded", item_count=0)
    built_version.refresh_from_db()
    with pytest.raises(runs.RunError, match="is empty"):
        _run(built_version, tiny_model)


def test_a_missing_model_is_refused(built_version, artifacts):
    with pytest.raises(runs.RunError, match="no model at"):
        _run(built_version, "/nowhere/model")


def test_defaults_are_wavecoders_recipe(built_version, tiny_model, artifacts):
    run = runs.create_training_run(dataset_version=built_version)
    assert run.base_model == "smollm2-135m-instruct"  # the registered offline default
    config = runs.train_config(run)
    assert (config.learning_rate, config.num_epochs, config.max_length, config.warmup_steps) == (
        5e-5,
        3,
        2048,
        15,
    )
    assert (config.global_batch_size, config.lr_scheduler, config.bf16, config.packing) == (
        512,
        "linear",
        None,
        False,
    )
    assert run.output_dir == str(artifacts / "runs" / str(run.pk))


# --- In the worker ---------------------------------------------------------------------------------------


def test_a_run_trains_follows_progress_and_resumes_from_its_checkpoint(built_version, tiny_model, artifacts):
    run = _run(built_version, tiny_model)
    seen: list[int] = []
    run = runs.run_training(run.pk, on_progress=lambda step: seen.append(step["step"]), poll_s=0.2)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert (run.last_step, run.total_steps, run.resumed_count) == (2, 2, 0)
    assert run.last_loss is not None and run.first_loss is not None and run.last_lr is not None
    assert seen and seen[-1] == 2
    assert (Path(run.final_model_path) / "config.json").exists()
    assert json.loads((run.folder / "run.json").read_text())["dataset_paths"] == [str(runs.data_file(run))]
    assert len(json.loads(runs.data_file(run).read_text())) == built_version.item_count
    assert [step for step, _ in runs.loss_points(run)] == [1, 2]

    # Resume: the run goes on to 4 steps from checkpoint-2 (as after a failure or a dead worker).
    TrainingRun.objects.filter(pk=run.pk).update(status="failed", max_steps=4)
    run.refresh_from_db()
    assert runs.can_resume(run)
    assert "resumes from checkpoint-2" in runs.resume_training(run)
    run = runs.run_training(run.pk, poll_s=0.2)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert (run.resumed_count, run.resumed_from_step, run.last_step) == (1, 2, 4)
    assert [step for step, _ in runs.loss_points(run)] == [1, 2, 3, 4]
    assert runs.run_training(run.pk) is None  # a redelivered task finds it finished


def test_a_model_missing_on_the_worker_fails_with_its_message(built_version, tiny_model, artifacts):
    run = _run(built_version, tiny_model)
    TrainingRun.objects.filter(pk=run.pk).update(base_model="/gone/model")
    run = runs.run_training(run.pk)
    assert run.status == TrainingRun.Status.FAILED
    assert run.error_kind == "invalid_config" and "no model at '/gone/model'" in run.error


def test_bad_data_fails_with_its_message(built_version, tiny_model, artifacts):
    run = _run(built_version, tiny_model)
    runs.data_file(run).parent.mkdir(parents=True)
    runs.data_file(run).write_text('[{"instruction": "x"')
    run = runs.run_training(run.pk)
    assert run.status == TrainingRun.Status.FAILED
    assert "not valid JSON" in run.error


def test_a_killed_process_is_explained(built_version, tiny_model, artifacts, monkeypatch):
    run = _run(built_version, tiny_model)
    kill = [sys.executable, "-c", "import os, signal; print('dying'); os.kill(os.getpid(), signal.SIGKILL)"]
    monkeypatch.setattr(finetune, "launch_command", lambda *a, **k: kill)
    run = runs.run_training(run.pk, poll_s=0.1)
    assert run.status == TrainingRun.Status.FAILED
    assert run.error_kind == "out_of_memory"
    assert "killed (SIGKILL)" in run.error and "dying" in run.error


def test_cancel_before_it_starts(built_version, tiny_model, artifacts):
    run = _run(built_version, tiny_model)
    assert "cancelled before it started" in runs.request_cancel(run)
    assert run.status == TrainingRun.Status.CANCELLED
    assert runs.run_training(run.pk) is None


def test_comparison_needs_a_finished_run(built_version, tiny_model, artifacts):
    run = _run(built_version, tiny_model)
    with pytest.raises(runs.RunError, match="no final model"):
        runs.create_comparison(run, limit=2)


def test_an_evaluation_scores_a_model_in_the_sandbox(tiny_model, artifacts):
    evaluation = runs.create_evaluation(model=str(tiny_model), limit=2, max_new_tokens=16)
    evaluation = runs.run_evaluation(evaluation.pk)
    assert evaluation.status == EvaluationRun.Status.SUCCEEDED, evaluation.error
    assert evaluation.pass_at_1 == 0.0  # a random tiny model
    assert [p["task_id"] for p in evaluation.results["problems"]] == ["HumanEval/0", "HumanEval/1"]
    assert evaluation.progress_done == evaluation.progress_total == 2


def test_an_evaluation_runs_in_its_own_process_and_a_kill_is_explained(tiny_model, artifacts, monkeypatch):
    evaluation = runs.create_evaluation(model=str(tiny_model), limit=1, max_new_tokens=8)
    progress = "import json; print(json.dumps({'phase': 'generating', 'done': 0, 'total': 1}), flush=True)"
    kill = [sys.executable, "-c", f"{progress}; import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    monkeypatch.setattr(runs, "evaluation_command", lambda *a: kill)
    evaluation = runs.run_evaluation(evaluation.pk)  # the worker (this process) survives the kill
    assert evaluation.status == EvaluationRun.Status.FAILED
    assert "killed (SIGKILL): most often out of memory" in evaluation.error
    assert (evaluation.phase, evaluation.progress_total) == ("generating", 1)


def test_an_evaluation_process_that_crashes_is_explained_with_its_output(tiny_model, artifacts, monkeypatch):
    evaluation = runs.create_evaluation(model=str(tiny_model), limit=1)
    crash = [sys.executable, "-c", "raise RuntimeError('CUDA driver is too old')"]
    monkeypatch.setattr(runs, "evaluation_command", lambda *a: crash)
    evaluation = runs.run_evaluation(evaluation.pk)
    assert evaluation.status == EvaluationRun.Status.FAILED
    assert evaluation.error.startswith("the evaluation process exited with status 1")
    assert "RuntimeError: CUDA driver is too old" in evaluation.error


def test_an_evaluation_whose_model_disappeared_fails_with_its_message(tmp_path, artifacts):
    model = build_tiny_model(tmp_path / "model")
    evaluation = runs.create_evaluation(model=str(model), limit=1)
    (model / "config.json").unlink()  # gone between queueing and the worker's turn
    evaluation = runs.run_evaluation(evaluation.pk)
    assert evaluation.status == EvaluationRun.Status.FAILED
    assert evaluation.error.startswith(f"{str(model)!r} is not a transformers model folder"), evaluation.error


def test_an_evaluation_of_a_missing_model_is_refused():
    with pytest.raises(runs.RunError, match="no model at"):
        runs.create_evaluation(model="/no/such/model")


# --- Commands ------------------------------------------------------------------------------------------


def test_train_command_runs_here_with_a_progress_bar(built_version, tiny_model, artifacts):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    args = [
        "--dataset-version",
        str(built_version.number),
        "--base-model",
        str(tiny_model),
        "--max-steps",
        "2",
    ]
    args += [
        "--global-batch-size",
        "2",
        "--per-device-batch-size",
        "2",
        "--max-length",
        "256",
        "--bf16",
        "off",
    ]
    call_command("train", *args, stdout=out)
    text = out.getvalue()
    assert "training" in text and "2/2" in text and "final model in" in text
    assert TrainingRun.objects.get().status == TrainingRun.Status.SUCCEEDED


def test_train_command_reports_every_problem(built_version, tiny_model, artifacts):
    from django.core.management import CommandError, call_command

    args = [
        "--dataset-version",
        str(built_version.number),
        "--base-model",
        str(tiny_model),
        "--global-batch-size",
        "3",
    ]
    with pytest.raises(CommandError, match="not a multiple"):
        call_command("train", *args, "--max-length", "4096")


def test_evaluate_command_with_a_model(tiny_model, artifacts, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("evaluate", "--model", str(tiny_model), "--limit", "1", "--max-new-tokens", "8", stdout=out)
    assert "passed 0/1" in out.getvalue() and "pass@1: 0.0%" in out.getvalue()
    assert EvaluationRun.objects.get().status == EvaluationRun.Status.SUCCEEDED


def test_orphaned_runs_are_queued_again_when_a_gpu_worker_starts(
    built_version, tiny_model, artifacts, monkeypatch
):
    import socket
    import subprocess
    from datetime import timedelta

    from django.utils import timezone

    queued: list[int] = []
    monkeypatch.setattr(runs, "queue_training", lambda run: queued.append(run.pk))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    now, here = timezone.now(), socket.gethostname()

    def run_with(**fields) -> TrainingRun:
        run = _run(built_version, tiny_model)
        TrainingRun.objects.filter(pk=run.pk).update(**fields)
        run.refresh_from_db()
        return run

    running = {"status": TrainingRun.Status.RUNNING, "worker_host": here}
    stale = run_with(**running, heartbeat_at=now - timedelta(hours=1), worker_pid=1)
    dead = run_with(**running, heartbeat_at=now, worker_pid=gone.pid)
    alive = run_with(**running, heartbeat_at=now, worker_pid=os.getpid())
    elsewhere = run_with(**{**running, "worker_host": "other-host"}, heartbeat_at=now, worker_pid=gone.pid)
    finished = run_with(status=TrainingRun.Status.FAILED, heartbeat_at=None)

    assert sorted(runs.requeue_orphaned_runs()) == sorted(queued) == sorted([stale.pk, dead.pk])
    dead.refresh_from_db()
    assert dead.phase == "queued again: its worker was lost"
    # The worker that takes the message claims the dead worker's run at once; a live worker's run is left.
    assert runs._claim(dead) and dead.worker_pid == os.getpid()
    assert not runs._claim(alive) and not runs._claim(elsewhere) and not runs._claim(finished)
    elsewhere.refresh_from_db()
    assert elsewhere.worker_host == "other-host"


def test_an_evaluation_whose_worker_died_here_is_queued_again_and_a_live_one_is_left(
    tiny_model, artifacts, monkeypatch
):
    import socket
    import subprocess

    queued: list[int] = []
    monkeypatch.setattr(runs, "queue_evaluation", lambda evaluation: queued.append(evaluation.pk))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()

    def evaluation_with(**fields) -> EvaluationRun:
        evaluation = runs.create_evaluation(model=str(tiny_model), limit=1, max_new_tokens=8)
        EvaluationRun.objects.filter(pk=evaluation.pk).update(status="running", **fields)
        evaluation.refresh_from_db()
        return evaluation

    dead = evaluation_with(worker_host=here, worker_pid=gone.pid)
    alive = evaluation_with(worker_host=here, worker_pid=os.getpid())
    elsewhere = evaluation_with(worker_host="other-host", worker_pid=gone.pid)
    runs.requeue_orphaned_runs()
    assert queued == [dead.pk]
    assert runs.run_evaluation(alive.pk) is None  # a redelivered message while a live worker runs it
    assert runs.run_evaluation(elsewhere.pk) is None
    dead = runs.run_evaluation(dead.pk)
    assert dead.status == EvaluationRun.Status.SUCCEEDED, dead.error
    assert (dead.worker_host, dead.worker_pid) == (here, os.getpid())
