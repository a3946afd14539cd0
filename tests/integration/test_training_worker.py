"""Training and evaluation runs on a real Celery worker (gpu queue) with a tiny Llama on the CPU: a run
trains with live progress and a loss chart, its final model reloads, base and tuned are compared on two
HumanEval problems; a running run is cancelled with a checkpoint; a run whose worker was killed resumes
from its checkpoint on the next worker that starts, by itself."""

import os
import signal

import pytest
from django.urls import reverse

from curation.models import process_alive
from tests.training.run_factory import build_version_for_training
from tests.training.tiny_model import build_tiny_model
from training import finetune, runs
from training.models import EvaluationRun, TrainingRun

from .conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def built_version(reviewer):
    return build_version_for_training(reviewer)


@pytest.fixture
def setup(settings, tmp_path, built_version):
    """A built dataset version, a tiny model, and an artifacts folder shared with the worker."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    env = {"WAVECODER_ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR)}
    return built_version, build_tiny_model(tmp_path / "tiny"), env


def _start(client, version, model, **overrides) -> TrainingRun:
    values = {
        "dataset_version": version.pk,
        "base_model": str(model),
        "method": "full",
        "learning_rate": 5e-3,
        "num_epochs": 3,
        "max_steps": 4,
        "max_length": 256,
        "warmup_steps": 0,
        "lr_scheduler": "linear",
        "global_batch_size": 2,
        "per_device_batch_size": 2,
        "bf16": "off",
        "seed": 0,
        "save_steps": 2,
        "num_processes": 1,
        "strategy": "single",
    }
    response = client.post(reverse("training-run-new"), {**values, **overrides})
    assert response.status_code == 302, response.content.decode()[-2000:]
    return TrainingRun.objects.order_by("-pk").first()


def _until(run, predicate):
    def check():
        run.refresh_from_db()
        return predicate(run)

    return check


def test_a_run_trains_reloads_and_is_compared_with_its_base(worker, client, admin_user, setup, tmp_path):
    version, model, env = setup
    worker(env=env)
    client.force_login(admin_user)
    run = _start(client, version, model)
    wait_for(_until(run, lambda r: not r.is_active), timeout=180, logs=tmp_path)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert (run.last_step, run.total_steps, run.progress_done, run.percent) == (4, 4, 4, 100)
    assert run.last_loss is not None and run.last_lr is not None and run.tokens_per_s
    assert [step for step, _ in runs.loss_points(run)] == [1, 2, 3, 4]

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(run.final_model_path).config.num_hidden_layers == 2
    page = client.get(reverse("training-run-detail", args=[run.pk])).content.decode()
    assert "<polyline" in page and "Compare base and tuned" in page

    response = client.post(
        reverse("evaluation-new"),
        {"training_run": run.pk, "limit": 2, "n": 1, "max_new_tokens": 16, "prompt_style": "completion"},
    )
    tuned = EvaluationRun.objects.get(role="tuned")
    assert response.url == reverse("evaluation-detail", args=[tuned.pk])
    base = tuned.compare_with
    wait_for(
        _until(tuned, lambda t: not t.is_active and not EvaluationRun.objects.get(pk=base.pk).is_active),
        timeout=120,
        logs=tmp_path,
    )
    base.refresh_from_db()
    assert (base.status, tuned.status) == ("succeeded", "succeeded"), (base.error, tuned.error)
    page = client.get(response.url).content.decode()
    assert 'id="comparison-counts"' in page and "HumanEval/1" in page
    assert "0</strong> problems fixed by the tuning" in page


def test_a_running_run_is_cancelled_with_a_checkpoint(worker, client, admin_user, setup, tmp_path):
    version, model, env = setup
    worker(env=env)
    client.force_login(admin_user)
    run = _start(client, version, model, max_steps=100000, save_steps=100000)
    wait_for(_until(run, lambda r: r.last_step >= 1), timeout=120, logs=tmp_path)
    client.post(reverse("training-run-cancel", args=[run.pk]))
    wait_for(_until(run, lambda r: not r.is_active), timeout=120, logs=tmp_path)
    assert run.status == TrainingRun.Status.CANCELLED, run.error
    checkpoint = finetune.last_checkpoint(run.folder)
    assert checkpoint is not None and f"{checkpoint.name} is saved" in run.error
    assert runs.can_resume(run)


def test_a_killed_worker_s_run_resumes_from_its_checkpoint(worker, client, admin_user, setup, tmp_path):
    version, model, env = setup
    first = worker(env=env)
    client.force_login(admin_user)
    run = _start(client, version, model, max_steps=100000, save_steps=100000)
    wait_for(_until(run, lambda r: r.last_step >= 2 and r.process_pid), timeout=120, logs=tmp_path)
    trainer_pid = run.process_pid
    os.kill(first.pid, signal.SIGKILL)  # the worker dies; its training process gets SIGTERM and saves
    first.wait(10)
    wait_for(lambda: not process_alive(trainer_pid), timeout=60, logs=tmp_path)
    checkpoint = finetune.last_checkpoint(run.folder)
    assert checkpoint is not None
    saved_step = int(checkpoint.name.rpartition("-")[2])
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # nobody told the row, and its heartbeat is still fresh
    TrainingRun.objects.filter(pk=run.pk).update(max_steps=saved_step + 2)  # so the resumed run ends soon

    worker(env=env)  # a gpu worker starting finds the run orphaned (its worker's process is gone): no click
    wait_for(_until(run, lambda r: not r.is_active), timeout=180, logs=tmp_path)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert (run.resumed_count, run.resumed_from_step, run.last_step) == (1, saved_step, saved_step + 2)
