"""Where the project's shared benchmark files are: ../shared/data beside the checkout (as on the team's
machines and in CI), /work/shared/data, or WAVECODER_SHARED_DATA."""

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    candidates = [
        os.environ.get("WAVECODER_SHARED_DATA"),
        _ROOT.parent / "shared" / "data",
        "/work/shared/data",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.fail(f"The shared data folder is missing (looked in {[str(c) for c in candidates if c]})")
