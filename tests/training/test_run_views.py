"""Training and evaluation pages and API: who may do what, every form error before anything is queued,
the live status partial with the loss chart, escaped log output."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from curation.tokens import issue_token
from tests.training.run_factory import build_version_for_training
from training import runs
from training.models import EvaluationRun, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def built_version(reviewer):
    return build_version_for_training(reviewer)


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str, int]]:
    """Runs and evaluations queued during the test, recorded instead of sent to a broker (the integration
    tests queue them for real)."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(runs, "queue_training", lambda run: calls.append(("train", run.pk)))
    monkeypatch.setattr(
        runs, "queue_evaluation", lambda evaluation: calls.append(("evaluate", evaluation.pk))
    )
    return calls


@pytest.fixture
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.ARTIFACTS_DIR


def _form(version, **overrides) -> dict:
    values = {
        "dataset_version": version.pk,
        "base_model": "smollm2-135m-instruct",
        "method": "full",
        "learning_rate": 5e-5,
        "num_epochs": 3,
        "max_length": 2048,
        "warmup_steps": 15,
        "lr_scheduler": "linear",
        "global_batch_size": 512,
        "per_device_batch_size": 4,
        "bf16": "auto",
        "gradient_checkpointing": "on",
        "seed": 42,
        "save_steps": 25,
        "num_processes": 1,
        "strategy": "single",
    }
    return {**values, **overrides}


def test_the_form_shows_wavecoders_defaults_and_a_cpu_preset(client, admin_user, built_version):
    client.force_login(admin_user)
    page = client.get(reverse("training-run-new")).content.decode()
    assert 'name="learning_rate" value="5e-05"' in page and 'name="global_batch_size" value="512"' in page
    assert 'value="smollm2-135m-instruct"' in page
    preset = client.get(reverse("training-run-new") + "?preset=cpu-demo").content.decode()
    assert 'name="global_batch_size" value="4"' in preset and 'name="max_steps" value="20"' in preset


def test_every_error_is_shown_and_nothing_is_queued(client, admin_user, built_version, queued, artifacts):
    client.force_login(admin_user)
    response = client.post(
        reverse("training-run-new"),
        _form(built_version, global_batch_size=10, lora_r=8, base_model="/no/such/model"),
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was queued: fix 3 problems" in page
    assert "not a multiple of the batch per device" in page
    assert "lora_r apply only to method" in page
    assert "no model at" in page
    assert TrainingRun.objects.count() == 0 and queued == []


def test_an_admin_starts_a_run(client, admin_user, built_version, queued, artifacts):
    client.force_login(admin_user)
    response = client.post(reverse("training-run-new"), _form(built_version, max_steps=5))
    run = TrainingRun.objects.get()
    assert response.url == reverse("training-run-detail", args=[run.pk])
    assert queued == [("train", run.pk)]
    assert (run.created_by, run.max_steps, run.bf16) == (admin_user, 5, "auto")


@pytest.mark.parametrize("who", ["curator", "reviewer"])
def test_only_admins_start_cancel_or_resume(client, request, who, built_version, queued, artifacts):
    client.force_login(request.getfixturevalue(who))
    assert client.post(reverse("training-run-new"), _form(built_version)).status_code == 403
    run = runs.create_training_run(dataset_version=built_version)
    assert client.post(reverse("training-run-cancel", args=[run.pk])).status_code == 403
    assert client.post(reverse("training-run-resume", args=[run.pk])).status_code == 403
    assert (
        client.post(reverse("evaluation-new"), {"model": "smollm2-135m-instruct", "n": 1}).status_code == 403
    )
    assert queued == []
    expected = 200 if who == "curator" else 403  # curators follow the runs
    assert client.get(reverse("training-run-detail", args=[run.pk])).status_code == expected


def test_the_status_shows_progress_chart_and_an_escaped_log(client, curator, built_version, artifacts):
    run = runs.create_training_run(dataset_version=built_version)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running",
        last_step=3,
        total_steps=10,
        last_loss=1.25,
        last_lr=4e-5,
        tokens_per_s=812,
        eta_s=30,
    )
    run.folder.mkdir(parents=True)
    events = [{"event": "step", "step": s, "loss": 2.0 / s} for s in (1, 2, 3)]
    (run.folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run.folder / "train.log").write_text("step 3 <script>alert(1)</script>\n")
    client.force_login(curator)
    page = client.get(
        reverse("training-run-detail", args=[run.pk]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-status"
    )
    html = page.content.decode()
    assert html.startswith('\n<section id="run-status"') or 'id="run-status"' in html[:200]
    assert 'hx-trigger="every 2s"' in html
    assert "3 / 10" in html and "1.2500" in html and "4.00e-05" in html and "812" in html
    assert "<polyline" in html and "&lt;script&gt;" in html and "<script>alert" not in html
    assert "<html" not in html  # only the partial


def test_the_page_shows_the_accumulation_and_a_log_scale_loss_chart(
    client, curator, built_version, artifacts
):
    run = runs.create_training_run(dataset_version=built_version)  # WaveCoder's 512 = 4 × 1 × 128
    run.folder.mkdir(parents=True)
    events = [{"event": "step", "step": s, "loss": loss} for s, loss in ((1, 1.78), (2, 0.2), (3, 0.000537))]
    (run.folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    client.force_login(curator)
    html = client.get(reverse("training-run-detail", args=[run.pk])).content.decode()
    assert "global 512 = 4 per device × 1 process × 128 accumulation" in html
    assert "loss (log scale)" in html and ">5.4e-04<" in html and ">1.78<" in html


def test_line_chart_axes():
    from curation.charts import line_chart

    linear = str(line_chart([(1, 2.0), (2, 1.0), (3, 0.5)], title="t"))
    assert "log scale" not in linear and ">0.5<" in linear and ">2<" in linear
    logged = str(line_chart([(1, 10.0), (2, 1.0), (3, 0.01)], title="t"))
    y = [float(v) for v in re.findall(r'<line class="grid" x1="\d+" x2="\d+" y1="([\d.]+)"', logged)]
    assert "(log scale)" in logged and len(y) == 2
    # on a log axis the middle value (1.0, a third of the way down in decades) sits a third of the way
    points = [tuple(map(float, p.split(","))) for p in re.search(r'points="([^"]+)"', logged)[1].split()]
    top, bottom = min(y), max(y)
    assert points[1][1] == pytest.approx(top + (bottom - top) / 3, abs=0.2)
    assert "log scale" not in str(line_chart([(1, 5.0), (2, 0.0)], title="t"))  # zero: linear


def test_cancel_and_resume(client, admin_user, built_version, queued, artifacts):
    client.force_login(admin_user)
    run = runs.create_training_run(dataset_version=built_version)
    client.post(reverse("training-run-cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "cancelled"
    client.post(reverse("training-run-resume", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "queued" and queued == [("train", run.pk)]


def test_compare_base_and_tuned_makes_two_evaluations(client, admin_user, built_version, queued, artifacts):
    run = runs.create_training_run(dataset_version=built_version)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded", final_model_path=str(run.folder / "final")
    )
    (run.folder / "final").mkdir(parents=True)
    (run.folder / "final" / "config.json").write_text("{}")
    client.force_login(admin_user)
    response = client.post(
        reverse("evaluation-new"),
        {"training_run": run.pk, "limit": 2, "n": 1, "max_new_tokens": 64, "prompt_style": "completion"},
    )
    base, tuned = EvaluationRun.objects.order_by("pk")
    assert response.url == reverse("evaluation-detail", args=[tuned.pk])
    assert (base.role, base.model, tuned.role, tuned.compare_with) == ("base", run.base_model, "tuned", base)
    assert tuned.model.endswith("/final") and queued == [("evaluate", base.pk), ("evaluate", tuned.pk)]


# --- API ----------------------------------------------------------------------------------------------


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user)}")
    return client


def test_api_needs_a_token_and_the_admin_role_to_write(curator, admin_user, built_version, queued, artifacts):
    assert APIClient().get("/api/training-runs/").status_code in (401, 403)
    body = {"dataset_version": built_version.number, "max_steps": 5}
    assert _api(curator).post("/api/training-runs/", body, format="json").status_code == 403
    admin = _api(admin_user)
    created = admin.post("/api/training-runs/", body, format="json")
    assert created.status_code == 201, created.json()
    run_id = created.json()["id"]
    assert created.json()["learning_rate"] == 5e-5 and queued == [("train", run_id)]
    detail = _api(curator).get(f"/api/training-runs/{run_id}/").json()
    assert detail["status"] == "queued" and detail["loss_points"] == []
    listed = _api(curator).get("/api/training-runs/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["id"] for r in rows] == [run_id] and "loss_points" not in rows[0]  # a list reads no files
    assert admin.post(f"/api/training-runs/{run_id}/cancel/").json()["detail"].endswith("before it started.")
    assert admin.post(f"/api/training-runs/{run_id}/resume/").status_code == 200


def test_api_lists_every_problem(admin_user, built_version, queued, artifacts):
    bad = {"dataset_version": built_version.number, "global_batch_size": 10, "lora_r": 4}
    response = _api(admin_user).post("/api/training-runs/", bad, format="json")
    assert response.status_code == 400 and len(response.json()["errors"]) == 2
    evaluation = _api(admin_user).post("/api/evaluation-runs/", {"model": "/nope"}, format="json")
    assert evaluation.status_code == 400 and "no model at" in evaluation.json()["errors"][0]
    assert queued == []
