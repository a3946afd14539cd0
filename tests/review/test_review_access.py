"""Who may decide what: only the instance a reviewer holds (or a free seat they take), always with the
version they reviewed, never showing an instance they do not hold, and blind under overlap."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from curation import review
from curation.models import Assignment, Instance, Review
from curation.roles import REVIEWER, grant

from .factory import make_instances

HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET_INSTRUCTION = "Write a Python function that returns the launch code."
SECRET_OUTPUT = "def launch_code():\n    return 'zebra-42'"
S = Instance.ReviewStatus


def _action(pk: int, action: str) -> str:
    return reverse("review-action", args=[pk, action])


def _reviewer(name: str):
    user = get_user_model().objects.create_user(name, password="pw-" + name)
    grant(user, REVIEWER)
    return user


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def bob(db):
    return _reviewer("bob")


@pytest.fixture
def bob_client(bob) -> Client:
    return _client(bob)


def _edit(instance: Instance, output: str, version: int = 0) -> dict[str, object]:
    return {
        "expected_version": version,
        "instruction": instance.instruction,
        "input": "",
        "output": output,
        "explanation": "",
        "tests": instance.tests,
    }


# --- deciding what another reviewer holds ---


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
def test_second_reviewer_cannot_reject_an_instance_held_by_the_first(reviewer_client, bob_client, headers):
    (instance,) = make_instances(1, instruction=SECRET_INSTRUCTION, output=SECRET_OUTPUT)
    assert f"#{instance.pk}" in reviewer_client.get(reverse("review")).content.decode()  # rita holds it
    response = bob_client.post(
        _action(instance.pk, "reject"), {"expected_version": 0, "reason": "Mine now."}, **headers
    )
    body = response.content.decode()
    assert response.status_code == 409
    assert "not assigned to you" in body
    assert "launch" not in body and "zebra" not in body
    instance.refresh_from_db()
    assert instance.review_status == S.UNREVIEWED and not Review.objects.exists()
    assert Assignment.objects.filter(instance=instance, reviewer__username="rita").exists()


@pytest.mark.parametrize("action", ["accept", "reject", "skip", "edit"])
def test_no_decision_on_an_instance_another_reviewer_holds(reviewer, bob, action):
    (instance,) = make_instances(1)
    assert review.next_instance(reviewer) == instance
    with pytest.raises(review.NotHeld):
        if action == "accept":
            review.accept(instance, bob, expected_version=0)
        elif action == "reject":
            review.reject(instance, bob, reason="no", expected_version=0)
        elif action == "skip":
            review.skip(instance, bob, expected_version=0)
        else:
            review.edit_and_accept(instance, bob, {"output": "x"}, expected_version=0)
    assert not Review.objects.exists() and not instance.revisions.exists()


def test_overlap_seats_are_taken_like_the_queue_takes_them(reviewer, bob_client):
    (instance,) = make_instances(1, overlap=2)
    assert review.next_instance(reviewer) == instance  # rita holds one of two seats
    # Bob takes the other, free seat with his decision.
    response = bob_client.post(_action(instance.pk, "accept"), {"expected_version": 0}, **HTMX)
    assert response.status_code == 200 and f"Accepted #{instance.pk}." in response.content.decode()
    # Rita's hold and Bob's decision fill both seats: a third reviewer may not decide.
    cleo = _reviewer("cleo")
    response = _client(cleo).post(_action(instance.pk, "accept"), {"expected_version": 0}, **HTMX)
    assert response.status_code == 409 and "not assigned to you" in response.content.decode()
    assert not Review.objects.filter(reviewer=cleo).exists()
    review.accept(instance, reviewer, expected_version=0)
    instance.refresh_from_db()
    assert instance.review_status == S.ACCEPTED


def test_an_expired_lease_lets_the_reviewer_decide_only_while_the_seat_is_free(reviewer, bob):
    first, second = make_instances(2)
    assert review.next_instance(reviewer) == first
    Assignment.objects.filter(reviewer=reviewer).update(lease_until=timezone.now() - timedelta(seconds=1))
    review.accept(first, reviewer, expected_version=0)  # nobody took it meanwhile
    assert review.next_instance(reviewer) == second
    Assignment.objects.filter(reviewer=reviewer).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert review.next_instance(bob) == second  # Bob took the freed seat
    with pytest.raises(review.NotHeld):
        review.accept(second, reviewer, expected_version=0)


def test_a_conflict_keeps_the_seat_it_took(reviewer, bob):
    (instance,) = make_instances(1, overlap=2)
    review.edit_and_accept(instance, bob, {"output": "def add(a, b):\n    return b + a"}, expected_version=0)
    with pytest.raises(review.Conflict):
        review.accept(instance, reviewer, expected_version=0)
    assert Assignment.objects.filter(instance=instance, reviewer=reviewer).exists()


# --- the expected version ---


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
@pytest.mark.parametrize("posted", [{}, {"expected_version": ""}, {"expected_version": "abc"}])
def test_unassigned_accept_without_expected_version_is_refused(reviewer_client, headers, posted):
    (instance,) = make_instances(1, instruction=SECRET_INSTRUCTION, output=SECRET_OUTPUT)
    response = reviewer_client.post(_action(instance.pk, "accept"), posted, **headers)
    body = response.content.decode()
    assert response.status_code == 400
    # Missing: the pane says so; not a number: the query-parameter check's plain-text answer.
    assert ("needs the version" if not posted.get("expected_version") else "expected_version must be") in body
    assert "launch" not in body and "zebra" not in body
    instance.refresh_from_db()
    assert instance.review_status == S.UNREVIEWED and not Review.objects.exists()
    assert not Assignment.objects.exists()


@pytest.mark.parametrize("action", ["edit", "reject", "skip"])
def test_every_decision_needs_the_expected_version(reviewer_client, action):
    (instance,) = make_instances(1)
    reviewer_client.get(reverse("review"))  # held
    data = {k: v for k, v in _edit(instance, "def add(a, b): ...").items() if k != "expected_version"}
    data["reason"] = "Wrong."
    response = reviewer_client.post(_action(instance.pk, action), data, **HTMX)
    body = response.content.decode()
    assert response.status_code == 400 and "needs the version" in body
    assert f"Code generation #{instance.pk}" in body  # the held instance is shown again
    assert not Review.objects.exists()


def test_a_stale_skip_is_a_conflict(reviewer_client, bob):
    (instance,) = make_instances(1, overlap=2)
    reviewer_client.get(reverse("review"))
    review.edit_and_accept(instance, bob, {"output": "def add(a, b):\n    return b + a"}, expected_version=0)
    response = reviewer_client.post(_action(instance.pk, "skip"), {"expected_version": 0}, **HTMX)
    assert response.status_code == 409 and not Review.objects.filter(decision="skip").exists()


def test_the_skip_form_posts_the_version(reviewer_client):
    (instance,) = make_instances(1)
    page = reviewer_client.get(reverse("review")).content.decode()
    skip_form = page[page.index('id="skip-form"') :]
    skip_form = skip_form[: skip_form.index("</form>")]
    assert 'name="expected_version" value="0"' in skip_form


# --- nothing shown of an instance the reviewer does not hold ---


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
@pytest.mark.parametrize("holder", [None, "bob"], ids=["unassigned", "held-by-another"])
def test_empty_edit_on_an_unassigned_instance_shows_none_of_its_text(reviewer_client, bob, headers, holder):
    (instance,) = make_instances(1, instruction=SECRET_INSTRUCTION, output=SECRET_OUTPUT)
    if holder:
        review.next_instance(bob)
    for data in ({}, {"expected_version": 0}):
        response = reviewer_client.post(_action(instance.pk, "edit"), data, **headers)
        body = response.content.decode()
        assert response.status_code in (400, 409)
        assert "launch" not in body and "zebra" not in body
    assert not Assignment.objects.filter(reviewer__username="rita").exists()  # no seat taken either


def test_invalid_reject_on_an_unassigned_instance_shows_none_of_its_text(reviewer_client):
    (instance,) = make_instances(1, instruction=SECRET_INSTRUCTION, output=SECRET_OUTPUT)
    response = reviewer_client.post(_action(instance.pk, "reject"), {"expected_version": 0}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 409 and "not assigned to you" in body
    assert "launch" not in body and "zebra" not in body


def test_a_refused_edit_keeps_what_the_reviewer_typed(reviewer_client, bob):
    (instance,) = make_instances(1)
    review.next_instance(bob)
    data = _edit(instance, "def add(a, b):\n    return a + b  # my careful fix")
    data["instruction"] = ""  # invalid: the form is shown again, but not this instance
    response = reviewer_client.post(_action(instance.pk, "edit"), data, **HTMX)
    body = response.content.decode()
    assert response.status_code == 409 and "my careful fix" in body
    assert "Write a Python function that adds two numbers." not in body


def test_history_needs_a_live_hold_or_a_decision(reviewer, bob, reviewer_client):
    (instance,) = make_instances(1, instruction=SECRET_INSTRUCTION)
    assert review.next_instance(reviewer) == instance
    url = reverse("review") + f"?instance={instance.pk}"
    assert reviewer_client.get(url).status_code == 200
    Assignment.objects.filter(reviewer=reviewer).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert review.next_instance(bob) == instance
    assert reviewer_client.get(url).status_code == 404


# --- blind overlap ---


def _edited_by_rita(instance: Instance, rita) -> None:
    assert review.next_instance(rita) == instance
    fields = {
        "instruction": "Rita's clearer instruction.",
        "output": "def add(a, b):\n    return a + b  # rita",
    }
    review.edit_and_accept(instance, rita, fields, expected_version=0)


def test_overlap_two_second_reviewer_sees_only_the_generated_text(reviewer, bob, bob_client):
    (instance,) = make_instances(1, overlap=2)
    _edited_by_rita(instance, reviewer)
    for response in (bob_client.get(reverse("review")), bob_client.get(reverse("review"), **HTMX)):
        body = response.content.decode()
        assert f"Code generation #{instance.pk}" in body
        assert "# rita" not in body and "Rita&#x27;s clearer" not in body and "Rita's clearer" not in body
        assert "revision 1" not in body and "Changes against the generated version" not in body
        assert "Write a Python function that adds two numbers." in body  # the edit form starts from it
    body = bob_client.get(reverse("review") + f"?instance={instance.pk}").content.decode()
    assert "# rita" not in body
    # After deciding, Bob sees the instance as it stands.
    bob_client.post(_action(instance.pk, "accept"), {"expected_version": 1})
    body = bob_client.get(reverse("review") + f"?instance={instance.pk}").content.decode()
    assert "You accepted this" in body and "# rita" in body and "revision 1" in body


def test_overlap_two_a_skip_does_not_lift_the_blind(reviewer, bob, bob_client):
    (instance,) = make_instances(1, overlap=2)
    _edited_by_rita(instance, reviewer)
    bob_client.get(reverse("review"))
    bob_client.post(_action(instance.pk, "skip"), {"expected_version": 1})
    body = bob_client.get(reverse("review") + f"?instance={instance.pk}").content.decode()
    assert "You skipped this" in body and "# rita" not in body


def test_overlap_two_a_conflict_does_not_show_the_other_reviewers_edit(reviewer, bob, bob_client):
    (instance,) = make_instances(1, overlap=2)
    assert review.next_instance(bob) == instance  # Bob loads it at version 0
    _edited_by_rita(instance, reviewer)
    response = bob_client.post(_action(instance.pk, "edit"), _edit(instance, "bob's text"), **HTMX)
    body = response.content.decode()
    assert response.status_code == 409 and "changed while you were reviewing" in body
    assert "# rita" not in body and "by rita" not in body and "Rita" not in body
    assert "bob&#x27;s text" in body  # his unsaved text is kept
    assert 'name="expected_version" value="1"' in body


def test_overlap_two_an_edit_starts_from_the_generated_text(reviewer, bob):
    (instance,) = make_instances(1, overlap=2)
    _edited_by_rita(instance, reviewer)
    fields = {"output": "def add(a, b):\n    return b + a"}
    made = review.edit_and_accept(instance, bob, fields, expected_version=1)
    assert made.revision.instruction == instance.instruction  # not Rita's, which Bob never saw


# --- curators decide for others ---


def test_curators_resolve_what_reviewers_hold_and_reviewers_cannot(reviewer, reviewer_client, curator):
    curator_client = _client(curator)
    (instance,) = make_instances(1, overlap=2)
    _edited_by_rita(instance, reviewer)
    url = reverse("review-resolve", args=[instance.pk])
    assert reviewer_client.get(url).status_code == 403  # every reviewer's edit is on that page
    assert reviewer_client.post(url, {"decision": "reject", "reason": "x"}).status_code == 403
    assert reviewer_client.get(reverse("review-conflicts")).status_code == 403
    bulk = reviewer_client.post(reverse("review-bulk"), {"decision": "accept", "confirm_count": 1})
    assert bulk.status_code == 403
    assert "# rita" in curator_client.get(url).content.decode()
    response = curator_client.post(url, {"decision": "reject", "reason": "Not for us."})
    assert response.status_code == 302
    instance.refresh_from_db()
    assert (instance.review_status, instance.human_decision) == (S.RESOLVED, "reject")
