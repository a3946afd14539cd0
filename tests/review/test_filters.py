"""filter_instances and filter_counts."""

from django.contrib.auth import get_user_model
from django.db import connection

from curation import review
from curation.models import Instance

from .factory import make_instance, make_job


def _corpus():
    job = make_job()
    other_job = make_job()
    good = make_instance(job, instruction="Write a Python function that adds.")
    bad = make_instance(job, passed=False, failed_rules=("names_language",))
    repair = make_instance(other_job, task="repair", language="go", output="func Add() {}")
    return job, good, bad, repair


def _ids(filters):
    return set(review.filter_instances(review.reviewable(), filters).values_list("id", flat=True))


def test_each_filter(db):
    job, good, bad, repair = _corpus()
    user = get_user_model().objects.create_user("rita")
    review.accept(bad, user, expected_version=0)  # human says yes where the discriminator said no
    assert _ids({"task": "repair"}) == {repair.pk}
    assert _ids({"language": "go"}) == {repair.pk}
    assert _ids({"verdict": "fail"}) == {bad.pk}
    assert _ids({"verdict": "pass"}) == {good.pk, repair.pk}
    assert _ids({"rule": "names_language"}) == {bad.pk}
    assert _ids({"status": "accepted"}) == {bad.pk}
    assert _ids({"status": "unreviewed"}) == {good.pk, repair.pk}
    assert _ids({"disagreement": "1"}) == {bad.pk}
    assert _ids({"job": str(job.pk)}) == {good.pk, bad.pk}
    assert _ids({"q": "func add"}) == {repair.pk}
    assert _ids({"task": "generation", "verdict": "pass"}) == {good.pk}
    assert review.clean_filters({"task": " repair ", "bogus": "x", "q": ""}) == {"task": "repair"}


def test_counts_per_facet_in_one_query(db, django_assert_max_num_queries):
    _, good, bad, repair = _corpus()
    Instance.objects.create(  # not judged: never counted
        job=good.job,
        sample=good.sample,
        task=good.task,
        prompt_version=good.prompt_version,
        generator_model="other",
        status=Instance.Status.FAILED,
    )
    # SQLite: the task ids, then one aggregate. PostgreSQL adds the planner's estimate and a savepoint
    # with local settings (time limit, no JIT) around the aggregate. Never a query per facet (18 here).
    with django_assert_max_num_queries(2 if connection.vendor == "sqlite" else 7):
        counts = review.filter_counts({}, language_options=["go", "python"])
    assert counts.total == 3
    assert counts.by_task == {"summarization": 0, "generation": 2, "translation": 0, "repair": 1}
    assert counts.by_language == {"go": 1, "python": 2}
    assert counts.by_verdict == {"pass": 2, "fail": 1}
    assert counts.by_status["unreviewed"] == 3 and counts.decided == 0
    narrowed = review.filter_counts({"language": "python"}, language_options=["go", "python"])
    assert (narrowed.total, narrowed.by_language["go"]) == (2, 0)
