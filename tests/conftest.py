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
