"""Shared fixtures. Tests never touch a model hub and keep all their files in a temporary folder."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Each test session writes its SQLite file, broker folders and artifacts under its own folder.
os.environ.setdefault("WAVECODER_VAR_DIR", tempfile.mkdtemp(prefix="wavecoder-test-"))

import pytest  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from curation.roles import ADMIN, CURATOR, REVIEWER, grant  # noqa: E402


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
