"""Review pages: the pane, actions with and without htmx, roles, CSRF, escaping, list, bulk, resolution."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from curation import review
from curation.models import Instance, Review
from curation.roles import REVIEWER, grant

from .factory import make_instances, rules_of

HTMX = {"HTTP_HX_REQUEST": "true"}


def _action(pk: int, action: str) -> str:
    return reverse("review-action", args=[pk, action])


def test_review_page_shows_the_next_instance_with_verdict_and_guidelines(reviewer_client):
    (instance,) = make_instances(1, passed=False, failed_rules=("names_language",))
    page = reviewer_client.get(reverse("review")).content.decode()
    assert f"#{instance.pk}" in page
    assert 'id="review-pane"' in page and "js/review.js" in page and "defer" in page
    assert "✘ FAILED" in page and "checked names_language" in page  # failed rule highlighted
    assert "Guidelines: Code generation" in page and "<details" in page
    assert 'class="code"' in page  # Pygments
    assert "0 / 1 decided" in page


def test_home_sends_reviewers_to_the_review_page(reviewer_client):
    response = reviewer_client.get(reverse("home"))
    assert response.status_code == 302 and response.url == reverse("review")


def test_accept_without_javascript_redirects_to_the_next(reviewer_client):
    first, second = make_instances(2)
    reviewer_client.get(reverse("review"))
    response = reviewer_client.post(_action(first.pk, "accept"), {"expected_version": 0})
    assert response.status_code == 302 and response.url.startswith(reverse("review"))
    first.refresh_from_db()
    assert first.review_status == Instance.ReviewStatus.ACCEPTED
    assert f"#{second.pk}" in reviewer_client.get(response.url).content.decode()


def test_htmx_accept_returns_only_the_next_pane(reviewer_client):
    first, second = make_instances(2)
    response = reviewer_client.post(_action(first.pk, "accept"), {"expected_version": 0}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and body.lstrip().startswith('<div id="review-pane">')
    assert f"Code generation #{second.pk}" in body and f"Accepted #{first.pk}." in body


def test_edit_then_accept_saves_a_revision_and_shows_the_diff(reviewer_client):
    (instance,) = make_instances(1)
    data = {
        "expected_version": 0,
        "instruction": instance.instruction,
        "input": "",
        "output": "def add(a, b):\n    return b + a",
        "explanation": "",
        "tests": instance.tests,
    }
    body = reviewer_client.post(_action(instance.pk, "edit"), data, **HTMX).content.decode()
    instance.refresh_from_db()
    assert instance.current_revision.output == "def add(a, b):\n    return b + a"
    assert "Saved revision 1" in body
    assert "against the generated version" in body and "output (revision 1)" in body


def test_stale_edit_gets_a_conflict_with_the_newer_version(reviewer_client, db):
    (instance,) = make_instances(1, overlap=2)
    other = get_user_model().objects.create_user("bob")
    review.edit_and_accept(
        instance, other, {"output": "def add(a, b):\n    return a + b  # bob"}, expected_version=0
    )
    data = {
        "expected_version": 0,
        "instruction": "x",
        "output": "mine",
        "input": "",
        "tests": "",
        "explanation": "",
    }
    response = reviewer_client.post(_action(instance.pk, "edit"), data, **HTMX)
    body = response.content.decode()
    assert response.status_code == 409
    assert "changed while you were reviewing" in body and "by bob" not in body
    assert "# bob" not in body  # blind: the other reviewer's edit is not shown
    assert "Your unsaved text" in body and "mine" in body
    assert 'name="expected_version" value="1"' in body  # the forms now act on the newer version
    instance.refresh_from_db()
    assert instance.current_revision.output.endswith("# bob")


def test_reject_needs_a_reason_and_records_rules(reviewer_client):
    (instance,) = make_instances(1)
    rule = rules_of()[0]
    reviewer_client.get(reverse("review"))  # hold it: a failed form shows only an instance one holds
    response = reviewer_client.post(
        _action(instance.pk, "reject"), {"expected_version": 0, "reason": ""}, **HTMX
    )
    assert response.status_code == 400 and f"#{instance.pk}" in response.content.decode()
    reviewer_client.post(
        _action(instance.pk, "reject"), {"expected_version": 0, "reason": "Wrong language", "rules": [rule]}
    )
    decision = Review.objects.get(instance=instance)
    assert (decision.decision, decision.reason, decision.broken_rules) == ("reject", "Wrong language", [rule])


def test_skip_and_undo(reviewer_client):
    first, second = make_instances(2)
    reviewer_client.post(_action(first.pk, "skip"), {"expected_version": 0})
    assert Review.objects.get().decision == "skip"
    body = reviewer_client.post(reverse("review-undo"), **HTMX).content.decode()
    assert f"Undid your decision on #{first.pk}" in body and f"#{first.pk}" in body
    assert not Review.objects.exists()


def test_previous_shows_a_decided_instance_read_only(reviewer_client):
    first, _ = make_instances(2)
    reviewer_client.post(_action(first.pk, "accept"), {"expected_version": 0})
    page = reviewer_client.get(reverse("review")).content.decode()
    assert f"?instance={first.pk}" in page  # k: previous
    past = reviewer_client.get(reverse("review") + f"?instance={first.pk}").content.decode()
    assert "You accepted this" in past and 'id="accept-form"' not in past


def test_someone_elses_instance_is_not_shown(reviewer_client):
    (instance,) = make_instances(1)
    assert reviewer_client.get(reverse("review") + f"?instance={instance.pk}").status_code == 404


def test_llm_output_is_escaped(reviewer_client, reviewer):
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    (instance,) = make_instances(1, task="summarization", instruction=evil, output=evil)
    body = reviewer_client.get(reverse("review")).content.decode()
    assert "<script>alert(1)" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)" in body
    # In the edit form and in a diff too.
    review.release(reviewer)  # the page leased it to rita; x edits it
    review.edit_and_accept(
        instance, get_user_model().objects.create_user("x"), {"output": evil + "!"}, expected_version=0
    )
    assert "<img src=x" not in review.diff_html(Instance.objects.get(pk=instance.pk))


def test_filters_show_counts(reviewer_client):
    make_instances(2)
    make_instances(1, task="repair", passed=False, failed_rules=("realistic_bug",))
    page = reviewer_client.get(reverse("review") + "?task=repair").content.decode()
    assert "Code repair (1)" in page and "Code generation (0)" in page
    assert "0 / 1 decided" in page


# --- roles and CSRF ---


def test_anonymous_is_sent_to_login(client, db):
    for name in ("review", "review-list", "review-agreement"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/login" in response.url


def test_no_role_cannot_review(client, nobody):
    client.force_login(nobody)
    assert client.get(reverse("review")).status_code == 403


def test_reviewer_cannot_use_curator_actions(reviewer_client):
    (instance,) = make_instances(1)
    assert reviewer_client.post(reverse("review-bulk"), {"decision": "accept"}).status_code == 403
    assert reviewer_client.get(reverse("review-conflicts")).status_code == 403
    assert (
        reviewer_client.post(
            reverse("review-resolve", args=[instance.pk]), {"decision": "accept"}
        ).status_code
        == 403
    )
    assert reviewer_client.get(reverse("review-agreement")).status_code == 403
    assert "Bulk decide" not in reviewer_client.get(reverse("review-list")).content.decode()
    instance.refresh_from_db()
    assert instance.review_status == Instance.ReviewStatus.UNREVIEWED


def test_csrf_is_enforced_on_review_posts(reviewer, db):
    (instance,) = make_instances(1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    for url in (_action(instance.pk, "accept"), reverse("review-undo")):
        assert client.post(url, {"expected_version": 0}).status_code == 403
    page = client.get(reverse("review")).content.decode()
    token = client.cookies["csrftoken"].value
    assert '"x-csrftoken"' in page  # htmx sends the token in a header
    response = client.post(_action(instance.pk, "accept"), {"expected_version": 0}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302
    instance.refresh_from_db()
    assert instance.review_status == Instance.ReviewStatus.ACCEPTED


# --- curators ---


def test_bulk_accept_confirms_the_count_first(curator_client):
    make_instances(3)
    response = curator_client.post(reverse("review-bulk") + "?verdict=pass", {"decision": "accept"})
    assert "Accept 3 instances?" in response.content.decode()
    assert not Review.objects.exists()
    response = curator_client.post(
        reverse("review-bulk") + "?verdict=pass", {"decision": "accept", "confirm_count": 3}
    )
    assert response.status_code == 302
    assert Instance.objects.filter(human_decision="accept").count() == 3


def test_conflict_resolution_view(curator_client, db):
    (instance,) = make_instances(1, overlap=2)
    a, b = (get_user_model().objects.create_user(n) for n in ("ann", "ben"))
    for user in (a, b):
        grant(user, REVIEWER)
    review.accept(instance, a, expected_version=0)
    review.reject(instance, b, reason="Not Python.", expected_version=0)
    assert str(instance.pk) in curator_client.get(reverse("review-conflicts")).content.decode()
    page = curator_client.get(reverse("review-resolve", args=[instance.pk])).content.decode()
    assert "ann" in page and "Not Python." in page
    response = curator_client.post(
        reverse("review-resolve", args=[instance.pk]), {"decision": "reject", "reason": "Agree with ben."}
    )
    assert response.status_code == 302
    instance.refresh_from_db()
    assert (instance.review_status, instance.human_decision) == ("resolved", "reject")
    assert "Cohen" in curator_client.get(reverse("review-agreement")).content.decode()


def test_list_view_pages_by_id(reviewer_client):
    instances = make_instances(3)
    body = reviewer_client.get(reverse("review-list")).content.decode()
    assert all(f">{i.pk}<" in body for i in instances)
    url = reverse("review-list") + f"?after={instances[0].pk}"
    partial = reviewer_client.get(
        url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="instance-rows"
    ).content.decode()
    assert "<html" not in partial and f">{instances[0].pk}<" not in partial


@pytest.mark.parametrize("name", ["review", "review-list"])
def test_pages_render_with_an_empty_queue(reviewer_client, name):
    assert reviewer_client.get(reverse(name)).status_code == 200
