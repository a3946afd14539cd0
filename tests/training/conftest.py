"""Fixtures of the dataset tests (pages, API): a built version, and builds recorded instead of queued."""

import pytest

from tests.training.dataset_factory import make_built_version, record_builds


@pytest.fixture
def queued_builds(monkeypatch) -> list[int]:
    """Version builds queued during the test (their ids), recorded instead of sent to a broker."""
    return record_builds(monkeypatch)


@pytest.fixture
def built_version(reviewer):
    """A built version: six clean instances kept, a renamed HumanEval/12 solution left out."""
    return make_built_version(reviewer)
