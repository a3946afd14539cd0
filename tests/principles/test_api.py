"""The API of analytics, pools, refinement runs, rollback and re-judging: auth, roles, the flow."""

import pytest
from rest_framework.test import APIClient

from curation import refinement
from curation.llm import OpenAICompatibleClient
from curation.models import CodeTask, PoolExample, RefinementRun, RejudgeJob
from curation.tokens import issue_token
from tests.fakes.openai_stub import OpenAIStub
from tests.review.factory import make_instance, make_job

from .stub import combined, proposer, strict_judge


def _api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user)}")
    return client


@pytest.mark.parametrize(
    "path", ["/api/analytics/", "/api/pool-examples/", "/api/refinement-runs/", "/api/rejudge-jobs/"]
)
def test_endpoints_need_a_curator_token(path, reviewer, curator):
    assert _api().get(path).status_code == 401
    assert _api(reviewer).get(path).status_code == 403
    assert _api(curator).get(path).status_code == 200
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nonsense")
    assert bad.get(path).status_code == 401


def test_analytics_json(decided, curator):
    a, _ = decided
    data = _api(curator).get("/api/analytics/", {"task": "generation"}).json()
    (task,) = data["tasks"]
    c = task["confusion"]
    assert (c["true_accept"], c["false_accept"], c["false_reject"], c["true_reject"]) == (1, 1, 3, 1)
    # p_o = 2/6; the discriminator passes 2/6, humans accept 4/6: p_e = 1/3·2/3 + 2/3·1/3 = 4/9;
    # kappa = (1/3 − 4/9) / (1 − 4/9) = −0.2.
    assert c["agreement"] == pytest.approx(1 / 3) and c["kappa"] == pytest.approx(-0.2)
    rule = next(r for r in task["rules"] if r["rule_id"] == a)
    assert rule["precision"] == pytest.approx(1 / 4) and rule["recall"] == pytest.approx(1 / 2)
    assert task["top_false_rejections"] == [a]
    assert _api(curator).get("/api/analytics/", {"task": "nope"}).status_code == 400


def test_pool_example_actions(decided, curator):
    api = _api(curator)
    example = PoolExample.objects.filter(kind="good").first()
    assert api.post(f"/api/pool-examples/{example.pk}/pin/").json()["pinned"] is True
    assert api.post(f"/api/pool-examples/{example.pk}/remove/").json()["removed"] is True
    listed = [e["id"] for e in api.get("/api/pool-examples/", {"kind": "good"}).json()["results"]]
    assert example.pk not in listed
    removed = [e["id"] for e in api.get("/api/pool-examples/", {"removed": "1"}).json()["results"]]
    assert removed == [example.pk]
    assert api.post(f"/api/pool-examples/{example.pk}/restore/").json()["removed"] is False


def test_refinement_flow_through_the_api(decided, curator, django_capture_on_commit_callbacks):
    a, _ = decided
    api = _api(curator)
    assert api.post("/api/refinement-runs/", {"task": "repair"}, format="json").status_code == 400
    with django_capture_on_commit_callbacks() as queued:
        response = api.post(
            "/api/refinement-runs/", {"task": "generation", "heldout_fraction": 0.5, "seed": 3}, format="json"
        )
    assert response.status_code == 201, response.json()
    assert len(queued) == 1  # the proposal task was queued
    run_id = response.json()["id"]
    # The worker's part, with a stub LLM.
    with OpenAIStub(responder=combined(strict_judge(a), proposer(a))) as stub:
        client = OpenAICompatibleClient(stub.base_url, timeout=5, max_retries=1, backoff_base=0.01)
        refinement.propose(run_id, client=client)
        run = api.get(f"/api/refinement-runs/{run_id}/").json()
        assert run["stage"] == "proposed"
        assert {c["op"] for c in run["changes"]} >= {"removed", "kept"}
        assert api.post(f"/api/refinement-runs/{run_id}/adopt/").status_code == 400
        bad = api.post(
            f"/api/refinement-runs/{run_id}/edit/", [{"id": "x y", "question": "?"}], format="json"
        )
        assert bad.status_code == 400
        edited = api.post(f"/api/refinement-runs/{run_id}/edit/", run["proposed_rules"][:2], format="json")
        assert edited.status_code == 200 and len(edited.json()["proposed_rules"]) == 2
        assert api.post(f"/api/refinement-runs/{run_id}/check/").json()["stage"] == "checking"
        refinement.check(run_id, client=client)
    checked = api.get(f"/api/refinement-runs/{run_id}/").json()
    assert checked["stage"] == "checked" and checked["check_results"]["judged"] > 0
    adopted = api.post(f"/api/refinement-runs/{run_id}/adopt/").json()
    assert adopted["stage"] == "adopted"
    task = CodeTask.objects.get(slug="generation")
    assert task.current_principles.version == adopted["proposed_version"]
    # Rollback through the API.
    back = api.post(f"/api/tasks/generation/principle-versions/{adopted['base_version']}/adopt/")
    assert back.status_code == 200
    task.refresh_from_db()
    assert task.current_principles.version == adopted["base_version"]
    assert api.post("/api/tasks/generation/principle-versions/99/adopt/").status_code == 400
    assert RefinementRun.objects.get(pk=run_id).decided_by == curator


def test_rejudge_through_the_api(db, curator):
    api = _api(curator)
    assert api.post("/api/rejudge-jobs/", {"tasks": ["nope"]}, format="json").status_code == 400
    assert api.post("/api/rejudge-jobs/", {"tasks": ["repair"]}, format="json").status_code == 400
    make_instance(make_job(), task="repair")
    created = api.post("/api/rejudge-jobs/", {"tasks": ["repair"], "only_outdated": False}, format="json")
    assert created.status_code == 201 and created.json()["progress_total"] == 1
    job_id = created.json()["id"]
    assert api.post(f"/api/rejudge-jobs/{job_id}/cancel/").json()["status"] == "cancelled"
    assert api.post(f"/api/rejudge-jobs/{job_id}/cancel/").status_code == 400
    assert RejudgeJob.objects.get(pk=job_id).status == RejudgeJob.Status.CANCELLED


def test_schema_lists_the_new_endpoints(curator):
    schema = _api(curator).get("/api/schema/", {"format": "json"}).json()
    for path in [
        "/api/analytics/",
        "/api/refinement-runs/{id}/check/",
        "/api/rejudge-jobs/{id}/cancel/",
        "/api/pool-examples/{id}/pin/",
        "/api/tasks/{slug}/principle-versions/{version}/adopt/",
    ]:
        assert path in schema["paths"], path
