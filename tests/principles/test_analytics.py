"""Agreement analytics against numbers worked out by hand."""

import pytest

from curation import analytics, review
from curation.analytics import Confusion
from curation.catalog import new_principle_version
from curation.models import CodeTask, Instance
from tests.review.factory import make_instance, make_job, rules_of


def _decide(instance, reviewer, human: str, *, broken=()):
    if human == "accept":
        review.accept(instance, reviewer, expected_version=instance.version)
    else:
        review.reject(
            instance, reviewer, reason="wrong", broken_rules=broken, expected_version=instance.version
        )


@pytest.fixture
def fixture_rows(db, reviewer):
    """Ten generation instances, verdict × human decision:

    | verdict \\ human | accept | reject |
    | pass            |   4    |   1    |   (the false acceptance: reviewer names rule B)
    | fail            |   2    |   3    |   (failing rule: A on the 2 false rejections and 2 true
                                               rejections, B on the third true rejection)
    """
    a, b = rules_of("generation")[:2]
    job = make_job()
    plan = (
        [(True, (), "accept", ())] * 4
        + [(True, (), "reject", (b,))]
        + [(False, (a,), "accept", ())] * 2
        + [(False, (a,), "reject", ())] * 2
        + [(False, (b,), "reject", ())]
    )
    rows = []
    for passed, failed, human, broken in plan:
        instance = make_instance(job, passed=passed, failed_rules=failed)
        _decide(instance, reviewer, human, broken=broken)
        rows.append(instance)
    # An undecided instance and another task's instance must not count.
    make_instance(job, passed=False, failed_rules=(a,))
    return a, b, rows


def test_confusion_and_kappa_by_hand(fixture_rows):
    task = CodeTask.objects.get(slug="generation")
    result = analytics.task_analytics(task)
    c = result.confusion
    assert (c.true_accept, c.false_accept, c.false_reject, c.true_reject) == (4, 1, 2, 3)
    assert c.n == 10
    # Observed agreement p_o = (4 + 3) / 10 = 0.7.
    assert c.agreement == pytest.approx(0.7)
    # Discriminator passes 5/10, humans accept 6/10:
    # p_e = 0.5·0.6 + 0.5·0.4 = 0.5, kappa = (0.7 − 0.5) / (1 − 0.5) = 0.4.
    assert c.kappa == pytest.approx(0.4)


def test_rule_precision_recall_and_blame_by_hand(fixture_rows):
    a, b, rows = fixture_rows
    result = analytics.task_analytics(CodeTask.objects.get(slug="generation"))
    by_id = {r.rule_id: r for r in result.rules}
    # Rule A fired on 4 instances (2 accepted, 2 rejected); 4 rejections in all.
    assert by_id[a].fired == 4 and by_id[a].fired_rejected == 2
    assert by_id[a].precision == pytest.approx(2 / 4)
    assert by_id[a].recall == pytest.approx(2 / 4)
    # Rule B fired once, on a rejected instance: precision 1/1, recall 1/4.
    assert by_id[b].precision == pytest.approx(1.0)
    assert by_id[b].recall == pytest.approx(1 / 4)
    # False rejections are A's (2); the false acceptance is blamed on B, which the reviewer named.
    assert [r.rule_id for r in result.false_rejection_ranking] == [a]
    assert by_id[a].false_rejections == 2
    assert sorted(by_id[a].false_rejection_cases) == sorted(r.pk for r in rows[5:7])
    assert [r.rule_id for r in result.false_acceptance_ranking] == [b]
    assert by_id[b].false_acceptance_cases == [rows[4].pk]
    assert "disagreement=1" in by_id[a].false_rejection_url and f"rule={a}" in by_id[a].false_rejection_url
    # A rule that never fired has no precision; its recall is 0.
    quiet = next(r for r in result.rules if r.rule_id not in (a, b))
    assert quiet.precision is None and quiet.recall == 0


def test_trend_counts_each_principle_version(fixture_rows, reviewer):
    a, b, rows = fixture_rows
    task = CodeTask.objects.get(slug="generation")
    v1 = task.current_principles
    v2 = new_principle_version(task, rules=v1.rules[1:], note="drop A")
    # Re-judge two accepted instances with v2: both pass now.
    from curation.models import Verdict

    for instance in rows[5:7]:
        verdict = Verdict.objects.create(instance=instance, principle_version=v2, model="stub", passed=True)
        Instance.objects.filter(pk=instance.pk).update(verdict=verdict, passed=True)
    task.refresh_from_db()
    trend = analytics.task_analytics(task).trend
    assert [(p.version, p.confusion.n, p.is_current) for p in trend] == [
        (v1.version, 10, False),
        (v2.version, 2, True),
    ]
    assert trend[1].confusion.true_accept == 2 and trend[1].confusion.agreement == 1.0
    # The current matrix now has those two as true acceptances: p_o = 9/10.
    assert analytics.task_analytics(task).confusion.agreement == pytest.approx(0.9)


def test_kappa_undefined_and_empty():
    assert Confusion().kappa is None and Confusion().agreement is None
    assert Confusion(true_accept=3).kappa is None  # one label throughout: p_e = 1
    assert Confusion(false_accept=1, false_reject=1).kappa == pytest.approx(-1.0)


def test_unknown_task_is_a_clear_error(db):
    with pytest.raises(ValueError, match="No task 'nope'"):
        analytics.all_analytics("nope")
