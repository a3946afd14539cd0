"""Cohen's and Fleiss' kappa against numbers worked out by hand, and agreement per task and reviewer."""

import pytest
from django.contrib.auth import get_user_model

from curation import review
from curation.roles import REVIEWER, grant

from .factory import make_instances

A, R = "accept", "reject"


def test_cohen_kappa_by_hand():
    # 10 instances, two reviewers. Both accept: 5; both reject: 3; accept/reject: 1; reject/accept: 1.
    # Observed agreement p_o = 8/10 = 0.8.
    # Reviewer 1 accepts 6/10, reviewer 2 accepts 6/10, so chance agreement
    # p_e = 0.6·0.6 + 0.4·0.4 = 0.52, and kappa = (0.8 − 0.52) / (1 − 0.52) = 0.28 / 0.48 = 0.58333…
    pairs = [(A, A)] * 5 + [(R, R)] * 3 + [(A, R), (R, A)]
    assert review.cohen_kappa(pairs) == pytest.approx(0.28 / 0.48)


def test_cohen_kappa_undefined_cases():
    assert review.cohen_kappa([]) is None
    assert review.cohen_kappa([(A, A), (A, A)]) is None  # p_e = 1: 0/0
    # Perfect disagreement on balanced labels: p_o = 0, p_e = 0.5, kappa = −1.
    assert review.cohen_kappa([(A, R), (R, A)]) == pytest.approx(-1)


def test_fleiss_kappa_by_hand():
    # 4 instances × 3 reviewers; columns (accept, reject).
    # P_i = (Σ n_ij² − n) / (n(n − 1)) with n = 3:
    #   [3, 0] → (9 − 3)/6 = 1;  [0, 3] → 1;  [2, 1] → (4 + 1 − 3)/6 = 1/3;  [1, 2] → 1/3.
    # P̄ = (1 + 1 + 1/3 + 1/3) / 4 = 2/3.
    # p_accept = (3 + 0 + 2 + 1) / 12 = 1/2 = p_reject, so P̄e = 1/4 + 1/4 = 1/2.
    # kappa = (2/3 − 1/2) / (1 − 1/2) = 1/3.
    table = [[3, 0], [0, 3], [2, 1], [1, 2]]
    assert review.fleiss_kappa(table) == pytest.approx(1 / 3)
    # Full agreement with both categories used: P̄ = 1, P̄e = 1/2, kappa = 1.
    assert review.fleiss_kappa([[3, 0], [0, 3]]) == pytest.approx(1)
    assert review.fleiss_kappa([[2, 0], [2, 0]]) is None  # one category throughout
    with pytest.raises(ValueError):
        review.fleiss_kappa([[2, 0], [1, 2]])  # unequal raters


def _reviewers(n: int):
    users = [get_user_model().objects.create_user(f"r{i}") for i in range(n)]
    for user in users:
        grant(user, REVIEWER)
    return users


def _decide(instance, user, decision):
    if decision == A:
        review.accept(instance, user, expected_version=0)
    else:
        review.reject(instance, user, reason="no", expected_version=0)


def test_agreement_by_task_uses_fleiss_for_three_reviewers(db):
    instances = make_instances(4, overlap=3)
    users = _reviewers(3)
    # The same table as above: kappa 1/3.
    for instance, votes in zip(instances, [(A, A, A), (R, R, R), (A, A, R), (A, R, R)], strict=True):
        for user, vote in zip(users, votes, strict=True):
            _decide(instance, user, vote)
    by_task = {a.label: a for a in review.agreement_by_task()}
    generation = by_task["Code generation"]
    assert (generation.method, generation.instances, generation.raters) == ("Fleiss", 4, 3)
    assert generation.kappa == pytest.approx(1 / 3)
    assert generation.observed == pytest.approx(0.5)
    assert by_task["Code repair"].kappa is None


def test_agreement_by_task_uses_cohen_for_two_and_per_reviewer(db):
    instances = make_instances(4, overlap=2)
    first, second = _reviewers(2)
    # Pairs (A,A), (R,R), (A,R), (A,A): p_o = 3/4; first accepts 3/4, second accepts 2/4;
    # p_e = 3/4·2/4 + 1/4·2/4 = 8/16 = 1/2; kappa = (3/4 − 1/2)/(1/2) = 1/2.
    for instance, (x, y) in zip(instances, [(A, A), (R, R), (A, R), (A, A)], strict=True):
        _decide(instance, first, x)
        _decide(instance, second, y)
    generation = next(a for a in review.agreement_by_task() if a.label == "Code generation")
    assert (generation.method, generation.kappa) == ("Cohen", pytest.approx(0.5))
    per = {r.reviewer: r for r in review.agreement_by_reviewer()}
    assert per["r0"].decisions == 4 and per["r0"].shared == 4
    assert per["r0"].kappa == pytest.approx(0.5) and per["r0"].with_others == pytest.approx(0.75)
    # Every instance passed the discriminator: r0 accepted 3 of 4.
    assert per["r0"].with_discriminator == pytest.approx(0.75)
