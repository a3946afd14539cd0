"""A built dataset version to train on, for the run tests (unit, integration and browser)."""

from __future__ import annotations

from tests.training.dataset_factory import make_clean


def build_version_for_training(reviewer):
    """Six clean accepted instances, built into a version without the (slow) embedding check."""
    from training.datasets import build_version, create_version
    from training.models import DatasetVersion

    make_clean(reviewer)
    version = build_version(create_version(name="for training", use_embeddings=False).pk)
    assert version.status == DatasetVersion.Status.SUCCEEDED, version.error
    return version
