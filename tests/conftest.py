"""Shared fixtures. The environment (a private var folder, no model hub) is set by tests/pytest_env.py."""

import pytest
from django.contrib.auth import get_user_model

from curation.roles import ADMIN, CURATOR, REVIEWER, grant


def _user(username: str, role: str | None):
    user = get_user_model().objects.create_user(username, password="pw-" + username)
    if role:
        grant(user, role)
    return user


@pytest.fixture
def reviewer(db):
    return _user("rita", REVIEWER)


@pytest.fixture
def curator(db):
    return _user("carl", CURATOR)


@pytest.fixture
def admin_user(db):
    return _user("ada", ADMIN)


@pytest.fixture
def nobody(db):
    """A logged-in account with no role."""
    return _user("nora", None)


@pytest.fixture
def curator_client(client, curator):
    client.force_login(curator)
    return client


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (facet options are cached for a minute in the app)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def decided(db, reviewer):
    """Six generation instances: the rule `a` fires on four, reviewers accept four and reject two."""
    from curation import review
    from tests.review.factory import make_instance, make_job, rules_of

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
