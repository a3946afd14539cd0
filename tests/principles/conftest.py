import pytest

from curation import review
from tests.review.factory import make_instance, make_job, rules_of


@pytest.fixture
def decided(db, reviewer):
    """Six generation instances: the rule `a` fires on four, reviewers accept four and reject two."""
    a = rules_of("generation")[0]
    job = make_job()
    rows = []
    for n in range(6):
        instance = make_instance(job, passed=n >= 4, failed_rules=(a,) if n < 4 else ())
        if n in (0, 4):
            review.reject(instance, reviewer, reason="<b>bad</b>", expected_version=0)
        else:
            review.accept(instance, reviewer, expected_version=0)
        rows.append(instance)
    return a, rows
