"""Stage functions of curation/review.py: leasing, decisions, optimistic locking, undo, overlap, pools."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from curation import review
from curation.models import Assignment, Instance, PoolExample, Review
from curation.roles import REVIEWER, grant

from .factory import make_instance, make_instances, rules_of

S = Instance.ReviewStatus


def _reviewer(name: str):
    user = get_user_model().objects.create_user(name, password="pw-" + name)
    grant(user, REVIEWER)
    return user


@pytest.fixture
def rita(db):
    return _reviewer("rita")


@pytest.fixture
def bob(db):
    return _reviewer("bob")


@pytest.fixture
def cleo(db):
    return _reviewer("cleo")


# --- leasing ---


def test_two_reviewers_never_get_the_same_instance_without_overlap(rita, bob):
    first, second = make_instances(2)
    assert review.next_instance(rita) == first
    assert review.next_instance(bob) == second
    assert review.next_instance(_reviewer("carol")) is None


def test_reload_gives_back_the_held_instance(rita):
    first, _ = make_instances(2)
    assert review.next_instance(rita) == first
    assert review.next_instance(rita) == first
    assert Assignment.objects.filter(reviewer=rita).count() == 1


def test_with_overlap_two_different_reviewers_share_an_instance(rita, bob, cleo):
    (only,) = make_instances(1, overlap=2)
    assert review.next_instance(rita) == only
    assert review.next_instance(bob) == only
    assert review.next_instance(cleo) is None  # two seats, both taken


def test_expired_lease_frees_the_instance(rita, bob):
    (only,) = make_instances(1)
    assert review.next_instance(rita) == only
    assert review.next_instance(bob) is None
    Assignment.objects.filter(reviewer=rita).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert review.next_instance(bob) == only


def test_no_repeats_after_a_decision_or_a_skip(rita):
    first, second = make_instances(2)
    review.accept(review.next_instance(rita), rita, expected_version=0)
    assert review.next_instance(rita) == second
    review.skip(second, rita)
    assert review.next_instance(rita) is None


def test_skipped_instance_goes_to_others(rita, bob):
    (only,) = make_instances(1)
    review.skip(review.next_instance(rita), rita)
    assert review.next_instance(bob) == only


def test_queue_honours_filters(rita):
    job_instances = make_instances(2)
    repair = make_instance(job_instances[0].job, task="repair")
    assert review.next_instance(rita, {"task": "repair"}) == repair


def test_queue_finishes_started_instances_first(rita, bob):
    first, second = make_instances(2, overlap=2)
    review.accept(review.next_instance(rita), rita, expected_version=0)  # first is now in review
    Instance.objects.filter(pk=second.pk).update(id=second.pk)  # untouched
    assert review.next_instance(bob) == first


# --- decisions ---


def test_accept_marks_accepted_and_files_a_human_good_example(rita):
    (instance,) = make_instances(1, passed=False, failed_rules=("names_language",))
    review.accept(review.next_instance(rita), rita, expected_version=0)
    instance.refresh_from_db()
    assert (instance.review_status, instance.human_decision) == (S.ACCEPTED, "accept")
    assert not Assignment.objects.exists()
    pool = PoolExample.objects.get(instance=instance)  # the discriminator's bad entry is gone
    assert (pool.origin, pool.kind) == (PoolExample.Origin.HUMAN, PoolExample.Kind.GOOD)


def test_edit_then_accept_saves_a_revision_and_bumps_the_version(rita):
    (instance,) = make_instances(1)
    review.edit_and_accept(
        instance,
        rita,
        {"instruction": "Write a Python function add(a, b).", "output": "def add(a, b): ..."},
        expected_version=0,
    )
    instance.refresh_from_db()
    assert instance.version == 1
    revision = instance.current_revision
    assert (revision.number, revision.author, revision.output) == (1, rita, "def add(a, b): ...")
    assert revision.tests == instance.tests  # untouched fields carried over
    assert instance.output == "def add(a, b):\n    return a + b"  # revision 0 kept
    assert PoolExample.objects.get(instance=instance, origin="human").output == "def add(a, b): ..."
    assert "revision 1" in review.diff_html(instance)


def test_stale_edit_raises_conflict_with_the_newer_revision(rita, bob):
    (instance,) = make_instances(1, overlap=2)
    review.edit_and_accept(instance, rita, {"output": "def add(a, b):\n    return b + a"}, expected_version=0)
    with pytest.raises(review.Conflict) as caught:
        review.edit_and_accept(instance, bob, {"output": "something else"}, expected_version=0)
    assert caught.value.revision.output == "def add(a, b):\n    return b + a"
    assert "version 1" in str(caught.value)
    instance.refresh_from_db()
    assert instance.current_revision.output == "def add(a, b):\n    return b + a"  # not overwritten
    assert not Review.objects.filter(reviewer=bob).exists()
    # A plain accept of text Bob never saw is stale too.
    with pytest.raises(review.Conflict):
        review.accept(instance, bob, expected_version=0)
    review.accept(instance, bob, expected_version=1)
    instance.refresh_from_db()
    assert instance.review_status == S.ACCEPTED


def test_reject_needs_a_reason_and_known_rules(rita):
    (instance,) = make_instances(1)
    with pytest.raises(review.ReviewError, match="why"):
        review.reject(instance, rita, reason=" ", expected_version=0)
    with pytest.raises(review.ReviewError, match="not_a_rule"):
        review.reject(instance, rita, reason="bad", broken_rules=["not_a_rule"], expected_version=0)
    rule = rules_of()[0]
    review.reject(instance, rita, reason="Misses the language.", broken_rules=[rule], expected_version=0)
    instance.refresh_from_db()
    assert (instance.review_status, instance.human_decision) == (S.REJECTED, "reject")
    bad = PoolExample.objects.get(instance=instance)
    assert (bad.origin, bad.kind) == ("human", "bad")
    assert bad.reasons == f"[{rule}] Misses the language."


def test_a_reviewer_decides_once(rita):
    (instance,) = make_instances(1, overlap=2)
    review.accept(instance, rita, expected_version=0)
    with pytest.raises(review.ReviewError, match="already reviewed"):
        review.accept(instance, rita, expected_version=0)


def test_decided_instance_takes_no_more_decisions(rita, bob):
    (instance,) = make_instances(1)
    review.accept(instance, rita, expected_version=0)
    with pytest.raises(review.ReviewError, match="accepted"):
        review.reject(instance, bob, reason="no", expected_version=0)


def test_undo_reverts_the_decision_and_its_revision(rita):
    (instance,) = make_instances(1, passed=True)
    review.next_instance(rita)
    review.edit_and_accept(instance, rita, {"output": "def add(a, b): return a+b"}, expected_version=0)
    back = review.undo_last(rita)
    assert back == instance
    instance.refresh_from_db()
    assert (instance.review_status, instance.human_decision) == (S.UNREVIEWED, None)
    assert instance.current_revision is None and instance.revisions.count() == 0
    assert instance.version == 2  # monotonic: an old page cannot act on it unnoticed
    assert not Review.objects.exists()
    # The discriminator's pool entry is back, the human one gone.
    assert list(PoolExample.objects.filter(instance=instance).values_list("origin", flat=True)) == [
        "discriminator"
    ]
    assert review.next_instance(rita) == instance  # re-opened for the same reviewer
    with pytest.raises(review.ReviewError, match="Nothing"):
        review.undo_last(_reviewer("zed"))


# --- overlap and resolution ---


def test_overlap_agreement_accepts_and_disagreement_conflicts(rita, bob, cleo):
    agreed, disputed = make_instances(2, overlap=2)
    review.accept(agreed, rita, expected_version=0)
    agreed.refresh_from_db()
    assert (agreed.review_status, agreed.human_decision) == (S.IN_REVIEW, None)
    review.accept(agreed, bob, expected_version=0)
    agreed.refresh_from_db()
    assert (agreed.review_status, agreed.human_decision) == (S.ACCEPTED, "accept")

    review.accept(disputed, rita, expected_version=0)
    review.reject(disputed, bob, reason="Wrong.", expected_version=0)
    disputed.refresh_from_db()
    assert (disputed.review_status, disputed.human_decision) == (S.CONFLICT, None)
    assert review.next_instance(cleo) is None  # conflicts are for curators

    curator = get_user_model().objects.create_user("carl")
    review.resolve(disputed, curator, "reject", reason="Bob is right.")
    disputed.refresh_from_db()
    assert (disputed.review_status, disputed.human_decision) == (S.RESOLVED, "reject")
    assert PoolExample.objects.get(instance=disputed, origin="human").kind == "bad"
    with pytest.raises(review.ReviewError, match="resolved"):
        review.undo_last(bob)


def test_resolution_can_adopt_a_reviewers_revision(rita, bob):
    (instance,) = make_instances(1, overlap=2)
    review.edit_and_accept(instance, rita, {"output": "def add(a, b):\n    return a+b"}, expected_version=0)
    rita_revision = instance.revisions.get()
    review.reject(instance, bob, reason="Still wrong.", expected_version=1)
    curator = get_user_model().objects.create_user("carl")
    review.resolve(instance, curator, "accept", revision=rita_revision)
    instance.refresh_from_db()
    assert instance.current_revision == rita_revision and instance.human_decision == "accept"


def test_bulk_decide_resolves_the_filtered_selection(rita):
    make_instances(3, passed=False, failed_rules=("names_language",))
    keep = make_instances(1)[0]
    curator = get_user_model().objects.create_user("carl")
    with pytest.raises(review.ReviewError):
        review.bulk_decide({"verdict": "fail"}, curator, "reject")
    assert review.bulk_decide({"verdict": "fail"}, curator, "reject", reason="Discriminator was right.") == 3
    assert Instance.objects.filter(review_status=S.RESOLVED, human_decision="reject").count() == 3
    keep.refresh_from_db()
    assert keep.review_status == S.UNREVIEWED
