"""Ingest: the raw-code stage of WaveCoder.

Turns a folder, a git repository, an archive or a CodeSearchNet-style JSONL/Parquet file into CodeSamples:
Python functions and methods (via `ast`) or whole files of other languages, filtered by length, Code
Alpaca's blacklist and "Python must parse", then deduplicated exactly (sha256 of normalized code) and
approximately (MinHash-LSH over 5-gram token shingles) against the run itself and the whole corpus.

Bad input never crashes a run: each problem becomes an entry in `report["errors"]` and the run goes on.
Only a source that is unusable as a whole (a missing folder, a failed clone) fails the run.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import stat
import subprocess
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSH
from django.conf import settings
from django.db.models import Count
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

from curation.models import CodeSample, CodeSource, IngestRun, ProgressReporter

logger = logging.getLogger(__name__)

# Code Alpaca's blacklist (words that point at tasks a text-only model cannot do), as WaveCoder uses it.
BLACKLIST = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]  # fmt: skip

Kind = CodeSource.Kind

# Pygments lexer alias -> the language name we store; anything else is not source code for us.
_LANGUAGES = {
    "python": "python", "javascript": "javascript", "jsx": "javascript", "typescript": "typescript",
    "tsx": "typescript", "java": "java", "go": "go", "php": "php", "ruby": "ruby", "c": "c", "cpp": "cpp",
    "csharp": "csharp", "rust": "rust", "kotlin": "kotlin", "scala": "scala", "swift": "swift",
    "bash": "shell", "powershell": "powershell", "lua": "lua", "haskell": "haskell", "dart": "dart",
    "julia": "julia", "elixir": "elixir", "erlang": "erlang", "clojure": "clojure", "ocaml": "ocaml",
    "groovy": "groovy", "objective-c": "objective-c", "splus": "r",
}  # fmt: skip
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", "venv", ".venv", ".tox", ".mypy_cache"}
_LICENSE_FILES = {
    "license",
    "license.txt",
    "license.md",
    "licence",
    "licence.txt",
    "licence.md",
    "copying",
    "copying.txt",
}

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")
_GIT_URL = re.compile(r"^(?:(?:https?|git|ssh|file)://|[\w.-]+@[\w.-]+:)")

# CodeSearchNet field names: ours first, then those of the original release and of the HF dataset.
_FIELDS = {
    "code": ("code", "whole_func_string", "func_code_string", "original_string"),
    "language": ("language",),
    "docstring": ("docstring", "func_documentation_string"),
    "repo": ("repo", "repository_name", "nwo"),
    "path": ("path", "func_path_in_repository"),
    "func_name": ("func_name",),
    "license": ("license",),
    "start_line": ("start_line",),
    "end_line": ("end_line",),
}
_REQUIRED_FIELDS = ("code", "language")

_BATCH_SIZE = 500  # samples saved per bulk_create, and compared against the database per query
_MAX_ERRORS = 1000  # error entries kept in the report; the rest are only counted
_REPORT_INTERVAL_S = 2.0  # how often a running ingest writes its report for the dashboard
_CHUNK = 1024 * 1024
# Small members are never called bombs: a tiny file of repeated lines can compress 300:1 legitimately.
_RATIO_FLOOR_BYTES = 1024 * 1024
_JSONL_GIVE_UP_LINES = 20  # a file whose first 20 lines hold no JSON object is not JSON Lines
_GIT_TIMEOUT_S = 600
_MINHASH_SEED = 1
# Stated explicitly, as stored signatures depend on it: datasketch 2 needs it to rebuild a MinHash from
# hash values, e.g. LeanMinHash(seed=1, hashvalues=np.frombuffer(sample.minhash, "<u4"), scheme="affine32").
_MINHASH_SCHEME = "affine32"
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_MERGE_RECENT = 100_000  # band hashes of this run kept in a set (~70 bytes each) before joining the array
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
_URL_CREDENTIALS = re.compile(r"(://)[^/\s:@]+:[^/\s@]+@")


def _server_path_pattern() -> re.Pattern[str] | None:
    """Absolute paths under this server's own folders (temporary files, the var folder, the checkout)."""
    return _path_pattern(tempfile.gettempdir(), str(settings.VAR_DIR), str(settings.BASE_DIR))


@lru_cache(maxsize=8)
def _path_pattern(*roots: str) -> re.Pattern[str] | None:
    folders = {os.path.realpath(root) for root in roots} | set(roots)
    folders = {folder.rstrip(os.sep) for folder in folders if folder.rstrip(os.sep)}
    if not folders:
        return None
    alternatives = "|".join(re.escape(folder) for folder in sorted(folders, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives})(?:{re.escape(os.sep)}[^\s'\":,;)\]]*)?(?![\w.-])")


_TOKEN = re.compile(r"\w+|[^\w\s]")


class SourceError(Exception):
    """The source as a whole cannot be read (missing, failed clone); the run fails with this message."""


class _FileProblem(Exception):
    """One file or row cannot be used; its message goes to the report."""


class _Cancelled(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# Creating a run


def default_options() -> dict[str, Any]:
    """The ingest options a run gets when it does not say otherwise (from settings)."""
    return {
        "min_chars": settings.INGEST_MIN_CHARS,
        "max_chars": settings.INGEST_MAX_CHARS,
        "blacklist": list(BLACKLIST),
        "near_dup_threshold": settings.INGEST_NEAR_DUP_THRESHOLD,
        "num_perm": settings.INGEST_MINHASH_PERMUTATIONS,
        "shingle_size": settings.INGEST_SHINGLE_SIZE,
        "python_must_parse": True,
    }


def validate_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Return the defaults updated with `options`, or raise ValueError saying what is wrong."""
    merged = default_options()
    options = options or {}
    if not isinstance(options, dict):
        raise ValueError("options must be a dictionary")
    unknown = sorted(set(options) - set(merged))
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(unknown)}; known options: {', '.join(merged)}")
    merged.update(options)
    for key in ("min_chars", "max_chars", "num_perm", "shingle_size"):
        value = merged[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if merged["min_chars"] >= merged["max_chars"]:
        raise ValueError(
            f"min_chars ({merged['min_chars']}) must be less than max_chars ({merged['max_chars']})"
        )
    threshold = merged["near_dup_threshold"]
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 < threshold <= 1:
        raise ValueError(f"near_dup_threshold must be a number in (0, 1], got {threshold!r}")
    if threshold < 1:
        try:
            MinHashLSH(threshold=threshold, num_perm=merged["num_perm"])
        except ValueError as exc:
            raise ValueError(
                f"near_dup_threshold {threshold} cannot be used with num_perm {merged['num_perm']}: {exc}"
            )
    blacklist = merged["blacklist"]
    if not isinstance(blacklist, list) or not all(isinstance(w, str) and w.strip() for w in blacklist):
        raise ValueError("blacklist must be a list of non-empty strings")
    if not isinstance(merged["python_must_parse"], bool):
        raise ValueError(f"python_must_parse must be true or false, got {merged['python_must_parse']!r}")
    return merged


def detect_kind(location: str | Path, *, label: str | None = None) -> str:
    """Tell what kind of source `location` is, or raise ValueError. Messages name it `label` when given
    (an upload's own name rather than where the server stored it)."""
    text = str(location)
    if _GIT_URL.match(text):
        return Kind.GIT
    shown = label or text
    path = Path(text).expanduser()
    name = path.name.lower()
    if path.is_dir():
        return Kind.GIT if (path / ".git").exists() or name.endswith(".git") else Kind.DIRECTORY
    if name.endswith(_ARCHIVE_SUFFIXES):
        return Kind.ARCHIVE
    if name.endswith(_JSONL_SUFFIXES):
        return Kind.JSONL
    if name.endswith(".parquet"):
        return Kind.PARQUET
    if not path.exists():
        raise ValueError(f"{shown} does not exist")
    raise ValueError(
        f"cannot tell what kind of source {shown} is: expected a folder, a git URL, an archive "
        "(.zip, .tar.gz, .tgz, .tar), JSON Lines (.jsonl, .jsonl.gz, .json) or Parquet (.parquet)"
    )


def create_ingest_run(
    location: str | Path,
    *,
    kind: str | None = None,
    name: str | None = None,
    user=None,
    options: dict[str, Any] | None = None,
    upload_path: str = "",
) -> IngestRun:
    """Queue an ingest of `location` (a path, a git URL, or an uploaded file's name with `upload_path`).

    The CodeSource is shared by every run of the same kind and location. Raises ValueError for an unknown
    kind or invalid options, before anything is written.
    """
    text = str(location).strip()
    if not text:
        raise ValueError("location is empty")
    kind = kind or (detect_kind(upload_path, label=text) if upload_path else detect_kind(text))
    if kind not in Kind.values:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {', '.join(Kind.values)}")
    merged = validate_options(options)

    if kind == Kind.GIT and _GIT_URL.match(text):
        text = text.rstrip("/")
        repo = _repo_from_url(text)
    else:
        if not upload_path:  # an upload's location is the name it was uploaded as, not a server path
            text = str(Path(text).expanduser().resolve())
        repo = _strip_suffix(Path(text).name) if kind in (Kind.DIRECTORY, Kind.GIT, Kind.ARCHIVE) else ""
    if len(text) > CodeSource._meta.get_field("location").max_length:
        raise ValueError("location is too long")

    source, _ = CodeSource.objects.get_or_create(
        kind=kind, location=text, defaults={"name": (name or repo or Path(text).name)[:200], "repo": repo}
    )
    return IngestRun.objects.create(source=source, upload_path=upload_path, options=merged, created_by=user)


# ---------------------------------------------------------------------------------------------------------
# Running it


def run_ingest(run_id: int, on_progress=None) -> IngestRun:
    """Ingest the run's source into CodeSamples and record the report; returns the finished run.

    Does nothing when the run already finished (a redelivered message for a running one runs it again:
    its worker is presumed dead). Samples are saved in batches, so what was
    saved before a failure or a cancellation stays.
    """
    run = IngestRun.objects.select_related("source").get(pk=run_id)
    if not run.claim():
        delete_upload(run)  # it ended (or was cancelled before it started): nothing reads the upload again
        return run
    ingest = None
    try:
        ingest = _Ingest(run, ProgressReporter(run, on_progress))
        ingest.ingest_source()
    except _Cancelled:
        ingest.save_report()
        run.finish(IngestRun.Status.CANCELLED)
    except SourceError as exc:
        if ingest:
            ingest.save_report()
        run.finish(IngestRun.Status.FAILED, error=_scrub(str(exc), ingest))
    except Exception as exc:
        logger.exception("ingest run %s failed", run.pk)
        if ingest:
            ingest.save_report()
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        run.finish(IngestRun.Status.FAILED, error=_scrub(message, ingest))
    else:
        run.finish(IngestRun.Status.SUCCEEDED)
    finally:
        # A worker killed mid-run leaves the run running and the upload in place for the redelivered task.
        if run.status not in IngestRun.ACTIVE:
            delete_upload(run)
    return run


def delete_upload(run: IngestRun) -> None:
    """Remove the run's stored upload, if it has one in the uploads folder (never any other file)."""
    if not run.upload_path:
        return
    stored = Path(run.upload_path)
    try:
        if stored.resolve().parent == Path(settings.UPLOADS_DIR).resolve():
            stored.unlink(missing_ok=True)
    except OSError:
        logger.warning("could not delete the upload of ingest run %s", run.pk, exc_info=True)


def _scrub(text: str, ingest: _Ingest | None = None) -> str:
    """`text` without this server's absolute paths: those the run knows become what people know them by
    (relative to the source, an upload's own name), others under the server's own folders (temporary
    files, the var folder) their last part. The source's location is kept: the curator gave it."""
    keep = ""
    if ingest is not None:
        text, keep = ingest.relabel(text), ingest.source.location
    pattern = _server_path_pattern()
    if pattern:
        pieces = text.split(keep) if len(keep) > 1 else [text]
        text = keep.join(pattern.sub(lambda m: Path(m.group(0)).name, piece) for piece in pieces)
    return _URL_CREDENTIALS.sub(r"\1[redacted]@", text)


@dataclass
class _Function:
    name: str
    code: str
    docstring: str
    start_line: int
    end_line: int


class _Ingest:
    """The state of one run: options, counters, the batch waiting to be saved and the LSH index."""

    def __init__(self, run: IngestRun, progress: ProgressReporter) -> None:
        self.run, self.source, self.progress = run, run.source, progress
        try:
            self.options = validate_options(run.options)
        except ValueError as exc:
            raise SourceError(f"invalid options: {exc}")
        self.blacklist = _blacklist_pattern(self.options["blacklist"])
        self.repo, self.license = self.source.repo, self.source.license
        self.report: dict[str, Any] = {
            "files_seen": 0,
            "candidates": 0,
            "kept": 0,
            "dropped": {},
            "errors": [],
            "errors_omitted": 0,
            "skipped_non_code": 0,
            "languages": {},
        }
        self.pending: list[CodeSample] = []
        self.pending_hashes: set[str] = set()
        self.near_dups: _BandIndex | None = None
        self._saved_at = 0.0
        # Server paths and what messages show instead: an upload by its own name, unpacked or cloned
        # files relative to their folder.
        self.hidden_paths: list[tuple[str, str]] = []
        if run.upload_path:
            self.show_as(run.upload_path, Path(self.source.location).name)

    def relabel(self, text: str) -> str:
        """`text` with the paths given to `show_as` replaced by what they are shown as."""
        for path, shown in self.hidden_paths:
            text = text.replace(path + os.sep, shown + "/" if shown else "").replace(path, shown or ".")
        return text

    def show_as(self, path: str | Path, shown: str = "") -> None:
        """Show `path` as `shown` in messages (and what is under it relative to it)."""
        self.hidden_paths.append((str(path), shown))
        self.hidden_paths.sort(key=lambda pair: len(pair[0]), reverse=True)  # the most specific first

    # -- bookkeeping -----------------------------------------------------------------------------------

    def error(self, path: str, message: str) -> None:
        if len(self.report["errors"]) < _MAX_ERRORS:
            # A member's name is the archive's content, shown as it is; messages lose this server's paths.
            entry = {"path": _clean(self.relabel(path), 1000), "error": _clean(_scrub(message, self), 2000)}
            self.report["errors"].append(entry)
        else:
            self.report["errors_omitted"] += 1

    def drop(self, reason: str) -> None:
        self.report["dropped"][reason] = self.report["dropped"].get(reason, 0) + 1

    def save_report(self, *, final: bool = True) -> None:
        """Write the report to the run; while running (not final), at most every few seconds."""
        if not final and time.monotonic() - self._saved_at < _REPORT_INTERVAL_S:
            return
        if final:
            # Recounted from the database: bulk_create(ignore_conflicts=True) does not say which rows it
            # skipped (a sample another run saved meanwhile). Done once, as it reads every kept row.
            kept = CodeSample.objects.filter(ingest_run=self.run)
            self.report["kept"] = kept.count()
            self.report["languages"] = dict(
                kept.order_by().values_list("language").annotate(n=Count("id")).values_list("language", "n")
            )
        self.run.report, self.run.kept_count = self.report, self.report["kept"]
        self.run.save(update_fields=["report", "kept_count"])
        self._saved_at = time.monotonic()

    # -- sources ---------------------------------------------------------------------------------------

    def ingest_source(self) -> None:
        path = Path(self.run.upload_path or self.source.location)
        kind = self.source.kind
        if kind != Kind.GIT and not path.exists():  # before indexing the corpus, which can take a while
            if self.run.upload_path:
                raise SourceError(
                    f"the uploaded file {Path(self.source.location).name} is no longer on the server; "
                    "upload it again"
                )
            raise SourceError(f"{path} does not exist")
        self._seed_near_dups()
        if kind == Kind.DIRECTORY:
            self.ingest_directory(path)
        elif kind == Kind.GIT:
            self.ingest_git(self.source.location)
        elif kind == Kind.ARCHIVE:
            self.ingest_archive(path)
        elif kind == Kind.JSONL:
            self.ingest_jsonl(path)
        elif kind == Kind.PARQUET:
            self.ingest_parquet(path)
        else:
            raise SourceError(f"unknown source kind {kind!r}")
        self.flush()
        self.save_report()
        if self.source.repo != self.repo or self.source.license != self.license:
            self.source.repo, self.source.license = self.repo[:500], self.license
            self.source.save(update_fields=["repo", "license"])

    def ingest_directory(self, root: Path) -> None:
        if not root.is_dir():
            raise SourceError(
                f"folder {root} does not exist" if not root.exists() else f"{root} is not a folder"
            )
        self.license = _detect_license(root) or self.license
        self.progress.start("scanning", 0)
        files = list(self._scan(root))
        self.progress.start("extracting", len(files))
        for done, rel in enumerate(files, 1):
            self._ingest_file(root, rel)
            self.progress.update(done)

    def ingest_git(self, location: str) -> None:
        checkout = Path(location).expanduser()
        if not _GIT_URL.match(location) and (checkout / ".git").exists():
            self.repo = _git_origin_repo(checkout) or self.repo or checkout.name
            self.ingest_directory(checkout)
            return
        with tempfile.TemporaryDirectory(prefix="wavecoder-clone-") as tmp:
            self.show_as(tmp)
            self.progress.start("cloning", 0)
            dest = Path(tmp) / "repo"
            # protocol.ext.allow=never: a crafted "ext::" URL must not run commands; "--" ends options.
            command = ["git", "-c", "protocol.ext.allow=never", "clone", "--depth", "1", "--quiet", "--"]
            try:
                done = subprocess.run(
                    [*command, location, str(dest)],
                    capture_output=True,
                    text=True,
                    timeout=_GIT_TIMEOUT_S,
                    env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                )
            except FileNotFoundError:
                raise SourceError("git is not installed on this machine")
            except subprocess.TimeoutExpired:
                raise SourceError(f"git clone of {location} took more than {_GIT_TIMEOUT_S} s")
            if done.returncode != 0:
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                raise SourceError(
                    f"git clone of {location} failed: {lines[-1] if lines else done.returncode}"
                )
            self.ingest_directory(dest)

    def ingest_archive(self, archive: Path) -> None:
        if not archive.is_file():
            raise SourceError(f"archive {archive} does not exist")
        self.repo = self.repo or _strip_suffix(Path(self.source.location).name)
        label = Path(self.source.location).name
        with tempfile.TemporaryDirectory(prefix="wavecoder-archive-") as tmp:
            dest = Path(tmp)
            self.show_as(tmp)
            self.show_as(dest.resolve())
            try:
                if archive.name.lower().endswith(".zip") or zipfile.is_zipfile(archive):
                    self._unpack_zip(archive, dest)
                else:
                    self._unpack_tar(archive, dest)
            except _ARCHIVE_ERRORS as exc:
                self.error(label, f"corrupt or unreadable archive: {exc}")
            except OSError as exc:
                self.error(label, f"cannot read the archive: {exc.strerror or exc}")
            # Members unpacked before a problem are still ingested.
            entries = list(dest.iterdir())
            root = entries[0] if len(entries) == 1 and entries[0].is_dir() else dest  # GitHub's "repo-main/"
            self.ingest_directory(root)

    def ingest_jsonl(self, path: Path) -> None:
        if not path.is_file():
            raise SourceError(f"file {path} does not exist")
        label = Path(self.source.location).name
        self.report["files_seen"] += 1
        limit = settings.INGEST_MAX_FILE_BYTES
        self.progress.start("scanning", 0)
        try:
            total = _count_lines(path)
        except (OSError, EOFError, zlib.error):
            total = 0  # a truncated file: reading it below reports the problem, after the rows before it
        self.progress.start("extracting", total)
        rows_ok = line_no = 0
        try:
            with _open_maybe_gzip(path) as f:
                for line_no, raw in enumerate(_limited_lines(f, limit), 1):
                    if line_no % 100 == 0:
                        self.progress.update(line_no)
                    if raw is None:
                        self.error(label, f"line {line_no}: longer than the {_mb(limit)} limit; skipped")
                        continue
                    if not raw.strip():
                        continue
                    try:
                        row = _parse_json_line(raw)
                        self._offer_row(row)
                        rows_ok += 1
                    except _FileProblem as exc:
                        self.error(label, f"line {line_no}: {exc}")
                    if rows_ok == 0 and line_no >= _JSONL_GIVE_UP_LINES:
                        self.error(
                            label, f"not JSON Lines: none of the first {line_no} lines is a usable row"
                        )
                        return
        except (OSError, EOFError, zlib.error) as exc:
            self.error(label, f"cannot read the file: {exc}")
        self.progress.update(line_no)

    def ingest_parquet(self, path: Path) -> None:
        if not path.is_file():
            raise SourceError(f"file {path} does not exist")
        label = Path(self.source.location).name
        self.report["files_seen"] += 1
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            self.error(label, f"not a valid Parquet file: {exc}")
            return
        names = parquet.schema_arrow.names
        missing = [field for field in _REQUIRED_FIELDS if not set(_FIELDS[field]) & set(names)]
        if missing:
            self.error(
                label, f"missing required column(s): {', '.join(missing)} (columns found: {', '.join(names)})"
            )
            return
        wanted = {alias for aliases in _FIELDS.values() for alias in aliases}
        self.progress.start("extracting", parquet.metadata.num_rows)
        row_no = 0
        try:
            for batch in parquet.iter_batches(batch_size=1000, columns=[n for n in names if n in wanted]):
                for row in batch.to_pylist():
                    row_no += 1
                    try:
                        self._offer_row(row)
                    except _FileProblem as exc:
                        self.error(label, f"row {row_no}: {exc}")
                self.progress.update(row_no)
        except (pa.ArrowException, OSError) as exc:
            self.error(label, f"cannot read the Parquet file after row {row_no}: {exc}")

    # -- files and rows --------------------------------------------------------------------------------

    def _scan(self, root: Path) -> Iterator[str]:
        """Relative paths of the files under `root`, sorted, skipping VCS, dependency and venv folders."""

        def on_error(exc: OSError) -> None:
            self.error(_relative(exc.filename, root), f"cannot list the folder: {exc.strerror}")

        found = 0
        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d not in _SKIP_DIRS and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
            )
            for filename in sorted(filenames):
                found += 1
                if found % 1000 == 0:
                    self.progress.update(found)
                yield _relative(os.path.join(dirpath, filename), root)

    def _ingest_file(self, root: Path, rel: str) -> None:
        self.report["files_seen"] += 1
        language = _language_for(rel)
        if language is None:
            self.report["skipped_non_code"] += 1
            return
        try:
            text = _read_text(root / rel, settings.INGEST_MAX_FILE_BYTES)
        except _FileProblem as exc:
            self.error(rel, str(exc))
            return
        if language != "python":
            self.offer(text, language, path=rel, start_line=1, end_line=text.count("\n") + 1)
            return
        try:
            functions = list(_python_functions(text))
        except (SyntaxError, ValueError, RecursionError) as exc:
            self.report["candidates"] += 1
            self.drop("syntax_error")
            self.error(rel, _syntax_message(exc))
            return
        for fn in functions:
            self.offer(
                fn.code,
                "python",
                path=rel,
                func_name=fn.name,
                docstring=fn.docstring,
                start_line=fn.start_line,
                end_line=fn.end_line,
            )

    def _offer_row(self, row: Any) -> None:
        """Offer one CodeSearchNet-shaped record; raises _FileProblem when it is malformed."""
        if not isinstance(row, dict):
            raise _FileProblem("expected a JSON object with 'code' and 'language'")
        values = {
            field: next((row[a] for a in aliases if row.get(a) is not None), None)
            for field, aliases in _FIELDS.items()
        }
        missing = [field for field in _REQUIRED_FIELDS if values[field] in (None, "")]
        if missing:
            raise _FileProblem(f"missing required field(s): {', '.join(missing)}")
        for field in ("code", "language", "docstring"):
            value = values[field]
            if value is None:
                continue
            if not isinstance(value, str):
                raise _FileProblem(f"field '{field}' must be a string, got {type(value).__name__}")
            # PostgreSQL rejects NUL characters and lone surrogates; refuse them here, not in bulk_create.
            if "\x00" in value:
                raise _FileProblem(f"field '{field}' contains NUL characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _FileProblem(f"field '{field}' is not valid Unicode text")
        self.offer(
            values["code"],
            values["language"].strip().lower(),
            path=str(values["path"] or ""),
            func_name=str(values["func_name"] or ""),
            docstring=values["docstring"] or "",
            start_line=_positive_int(values["start_line"]),
            end_line=_positive_int(values["end_line"]),
            repo=str(values["repo"] or "") or None,
            license=str(values["license"] or "") or None,
        )

    # -- filters, dedup and saving ---------------------------------------------------------------------

    def offer(
        self,
        code: str,
        language: str,
        *,
        path: str = "",
        func_name: str = "",
        docstring: str = "",
        start_line: int | None = None,
        end_line: int | None = None,
        repo: str | None = None,
        license: str | None = None,
    ) -> None:
        """Run one candidate through the filters and queue it for saving (near-dedup happens at flush)."""
        self.report["candidates"] += 1
        code = _normalize_newlines(code)
        reason = self._rejection(code, language, docstring)
        if reason is None:
            digest = content_hash(code)
            if digest in self.pending_hashes:  # duplicates of saved samples are found at flush
                reason = "exact_duplicate"
        if reason:
            self.drop(reason)
            return
        self.pending_hashes.add(digest)
        self.pending.append(
            CodeSample(
                source=self.source,
                ingest_run=self.run,
                language=_clean(language, 40),
                code=code,
                docstring=docstring,
                func_name=_clean(func_name, 300),
                repo=_clean(repo or self.repo, 500),
                path=_clean(path, 1000),
                start_line=start_line,
                end_line=end_line,
                license=_clean(license or self.license, 100),
                n_chars=len(code),
                content_hash=digest,
            )
        )
        if len(self.pending) >= _BATCH_SIZE:
            self.flush()

    def _rejection(self, code: str, language: str, docstring: str) -> str | None:
        """Why the filters drop this code, or None when it passes them."""
        if len(code) < self.options["min_chars"]:
            return "too_short"
        if len(code) > self.options["max_chars"]:
            return "too_long"
        if self.blacklist and (self.blacklist.search(code) or self.blacklist.search(docstring)):
            return "blacklisted"
        if language == "python" and self.options["python_must_parse"] and not _parses(code):
            return "syntax_error"
        return None

    def flush(self) -> None:
        """Drop the batch's exact duplicates of saved samples and near duplicates of anything seen, save."""
        if not self.pending:
            return
        # Earlier batches are in the database by now, so this also catches duplicates within the run.
        saved = set(
            CodeSample.objects.filter(content_hash__in=self.pending_hashes).values_list(
                "content_hash", flat=True
            )
        )
        fresh = []
        for sample in self.pending:
            if sample.content_hash in saved:
                self.drop("exact_duplicate")
            else:
                fresh.append(sample)
        signatures = _signatures(
            [sample.code for sample in fresh], self.options["num_perm"], self.options["shingle_size"]
        )
        near = self.near_dups.check_and_add(signatures) if self.near_dups else [False] * len(fresh)
        keep = []
        for sample, signature, is_near in zip(fresh, signatures, near, strict=True):
            if is_near:
                self.drop("near_duplicate")
                continue
            sample.minhash = signature.astype("<u4").tobytes()
            keep.append(sample)
        CodeSample.objects.bulk_create(keep, ignore_conflicts=True)
        self.pending, self.pending_hashes = [], set()
        self.report["kept"] += len(keep)
        for sample in keep:
            self.report["languages"][sample.language] = self.report["languages"].get(sample.language, 0) + 1
        self.save_report(final=False)
        if IngestRun.objects.filter(pk=self.run.pk, status=IngestRun.Status.CANCELLED).exists():
            raise _Cancelled

    def _seed_near_dups(self) -> None:
        """Index the signatures of every sample already in the corpus, so new near-duplicates are caught."""
        if self.options["near_dup_threshold"] >= 1:
            return  # 1.0 means exact dedup only
        num_perm = self.options["num_perm"]
        self.near_dups = _BandIndex(self.options["near_dup_threshold"], num_perm)
        self.progress.start("indexing", CodeSample.objects.count())
        rows = CodeSample.objects.order_by().values_list("minhash", flat=True).iterator(chunk_size=2000)
        chunk: list[bytes] = []
        for done, signature in enumerate(rows, 1):
            # Signatures made with another number of permutations cannot be compared; skip them.
            if len(signature) == 4 * num_perm:
                chunk.append(bytes(signature))
            if len(chunk) == 10_000:
                self.near_dups.add_corpus(np.frombuffer(b"".join(chunk), dtype="<u4").reshape(-1, num_perm))
                chunk = []
                self.progress.update(done)
        if chunk:
            self.near_dups.add_corpus(np.frombuffer(b"".join(chunk), dtype="<u4").reshape(-1, num_perm))
        self.near_dups.compact()

    # -- archives --------------------------------------------------------------------------------------

    def _unpack_zip(self, archive: Path, dest: Path) -> None:
        guard = _ArchiveGuard(archive.stat().st_size)
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            self.progress.start("unpacking", len(members))
            for done, info in enumerate(members, 1):
                self.progress.update(done)
                name = info.filename
                if info.is_dir():
                    continue  # folders are made as their files need them
                problem = _unsafe_member(name)
                if not problem and stat.S_ISLNK(info.external_attr >> 16):
                    problem = "symbolic links are not unpacked"
                if problem:
                    self.error(name, f"refused archive member: {problem}")
                    continue
                # Zip members are independent: after a member too large for what is left, a smaller one
                # may still be unpacked; past the total ratio, nothing more is.
                refusal = guard.refusal(info.file_size, compressed=info.compress_size, stop_when_full=False)
                if refusal:
                    self.error(name, refusal.message)
                    if refusal.stop:
                        return
                    continue
                with _member_errors(self, name):
                    with zf.open(info) as src:
                        guard.add(_copy_limited(src, _member_target(dest, name), info.file_size))

    def _unpack_tar(self, archive: Path, dest: Path) -> None:
        guard = _ArchiveGuard(archive.stat().st_size)
        self.progress.start("unpacking", 0)
        try:
            tf = tarfile.open(archive, "r:*")
        except tarfile.ReadError:  # its own message lists every compression it tried, one per line
            raise tarfile.ReadError("not a zip or tar archive (plain, .gz, .bz2 or .xz), or a corrupt one")
        with tf:
            for member in tf:
                name = member.name
                if member.isdir():
                    continue
                problem = _unsafe_member(name)
                if not problem and (member.issym() or member.islnk()):
                    problem = "links are not unpacked"
                if not problem and not member.isfile():
                    problem = "not a regular file"
                if problem:
                    self.error(name, f"refused archive member: {problem}")
                    continue
                # A compressed tar is one stream: skipping a huge member still means decompressing it, so a
                # bomb stops the unpacking; what came before it is kept.
                refusal = guard.refusal(member.size, stop_when_full=True)
                if refusal:
                    self.error(name, refusal.message)
                    return
                with _member_errors(self, name):
                    src = tf.extractfile(member)
                    with src:
                        guard.add(_copy_limited(src, _member_target(dest, name), member.size))


@dataclass
class _Refusal:
    message: str
    stop: bool  # stop unpacking the archive, rather than skip this member


class _ArchiveGuard:
    """What an archive may unpack to, counted over all its members together, for zip and tar alike: at
    most INGEST_MAX_ARCHIVE_BYTES, and (past the first MB) at most INGEST_MAX_ARCHIVE_RATIO times the size
    of the archive itself; a zip member's own compression ratio, which its header declares, is checked
    too. A bomb split into many small members passes every per-member check but not these."""

    def __init__(self, archive_size: int) -> None:
        self.budget, self.ratio = settings.INGEST_MAX_ARCHIVE_BYTES, settings.INGEST_MAX_ARCHIVE_RATIO
        self.archive_size = max(archive_size, 1)
        self.unpacked = 0  # bytes written so far

    def refusal(self, size: int, *, compressed: int | None = None, stop_when_full: bool) -> _Refusal | None:
        """Why a member of `size` bytes (declared) may not be unpacked, or None when it may."""
        if compressed is not None and size > max(compressed * self.ratio, _RATIO_FLOOR_BYTES):
            member_ratio = size / max(compressed, 1)
            return _Refusal(_bomb_message(f"compression ratio {member_ratio:,.0f}:1", self.ratio), stop=False)
        after = self.unpacked + size
        if after > self.budget:
            message = _over_budget_message(self.budget)
            return _Refusal(message + "; stopped unpacking" if stop_when_full else message, stop_when_full)
        if after > _RATIO_FLOOR_BYTES and after / self.archive_size > self.ratio:
            growth = f"the archive would expand {after / self.archive_size:,.0f} times its size"
            return _Refusal(_bomb_message(growth, self.ratio) + "; stopped unpacking", stop=True)
        return None

    def add(self, written: int) -> None:
        self.unpacked += written


class _BandIndex:
    """MinHash-LSH banding: is a signature likely a near duplicate of one indexed before?

    It uses the b bands × r rows that datasketch's MinHashLSH picks for the threshold, so it finds what
    MinHashLSH would; but MinHashLSH keeps ~9 KB of Python objects per signature (measured: 540 MB for 60K
    samples, so ~9 GB for a million), while here a signature costs b × 8 bytes (200 at 0.7 and 256
    permutations): one hash per band, in a sorted numpy array.
    """

    def __init__(self, threshold: float, num_perm: int) -> None:
        params = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = params.b, params.r
        self.sorted = np.empty(0, dtype=np.uint64)  # band hashes of the corpus, searchable
        self.parts: list[np.ndarray] = []  # band hashes waiting to be merged into `sorted`
        self.recent: set[int] = set()  # band hashes added since the last merge (this run's samples)

    def band_hashes(self, signatures: np.ndarray) -> np.ndarray:
        """(n, num_perm) uint32 -> (n, bands) uint64: FNV-1a over each band's rows, seeded by the band."""
        n = len(signatures)
        rows = signatures[:, : self.bands * self.rows].reshape(n, self.bands, self.rows).astype(np.uint64)
        digest = np.tile(_FNV_OFFSET + np.arange(self.bands, dtype=np.uint64), (n, 1))
        for k in range(self.rows):
            digest = (digest ^ rows[:, :, k]) * _FNV_PRIME  # wraps modulo 2**64, as FNV does
        return digest

    def add_corpus(self, signatures: np.ndarray) -> None:
        self.parts.append(self.band_hashes(signatures).ravel())

    def compact(self) -> None:
        """Merge the waiting band hashes into the sorted array."""
        if self.parts or self.recent:
            recent = np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent))
            merged = np.concatenate([self.sorted, np.sort(np.concatenate([recent, *self.parts]))])
            merged.sort(kind="stable")  # timsort: merging two sorted runs takes linear time
            self.sorted, self.parts, self.recent = merged, [], set()

    def check_and_add(self, signatures: np.ndarray) -> list[bool]:
        """For each signature, in order: does it share a band with an earlier one? If not, it is added."""
        if not len(signatures):
            return []
        hashes = self.band_hashes(signatures)
        if len(self.sorted):
            positions = np.searchsorted(self.sorted, hashes).clip(max=len(self.sorted) - 1)
            in_corpus = (self.sorted[positions] == hashes).any(axis=1)
        else:
            in_corpus = np.zeros(len(hashes), dtype=bool)
        near = []
        for row, seen in zip(hashes.tolist(), in_corpus.tolist(), strict=True):
            seen = seen or not self.recent.isdisjoint(row)
            if not seen:
                self.recent.update(row)
            near.append(seen)
        if len(self.recent) > _MERGE_RECENT:
            self.compact()
        return near


@contextmanager
def _member_errors(ingest: _Ingest, name: str) -> Iterator[None]:
    """Report an archive member that fails to unpack, then go on with the next one."""
    try:
        yield
    except _FileProblem as exc:
        ingest.error(name, f"refused archive member: {exc}")
    except (*_ARCHIVE_ERRORS, OSError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted zip member; NotImplementedError: an unsupported compression method.
        ingest.error(name, f"cannot unpack archive member: {exc}")


# ---------------------------------------------------------------------------------------------------------
# Helpers


def content_hash(code: str) -> str:
    """sha256 of code with line endings normalized, trailing whitespace stripped and blank lines dropped."""
    lines = (line.rstrip() for line in _normalize_newlines(code).split("\n"))
    return hashlib.sha256("\n".join(line for line in lines if line).encode("utf-8")).hexdigest()


def _signatures(codes: list[str], num_perm: int, shingle_size: int) -> np.ndarray:
    """MinHash signatures (n × num_perm uint32) of the codes' token shingles, computed in bulk."""
    shingle_sets = []
    for code in codes:
        tokens = _TOKEN.findall(code)
        starts = range(max(1, len(tokens) - shingle_size + 1))
        shingle_sets.append({" ".join(tokens[i : i + shingle_size]).encode("utf-8") for i in starts})
    # MinHash.bulk makes the permutations once (the slow part) and feeds each set through update_batch.
    minhashes = MinHash.bulk(shingle_sets, num_perm=num_perm, seed=_MINHASH_SEED, scheme=_MINHASH_SCHEME)
    return np.array([m.hashvalues for m in minhashes], dtype=np.uint32).reshape(len(codes), num_perm)


def _python_functions(source: str) -> Iterator[_Function]:
    """Every function and method of a module, in source order; functions inside functions stay in theirs."""
    tree = ast.parse(source)
    lines = source.split("\n")  # ast counts lines by \n only (not \f or \u2028, as str.splitlines would)

    def visit(node: ast.AST, prefix: str) -> Iterator[_Function]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                end = child.end_lineno or child.lineno
                yield _Function(
                    name=prefix + child.name,
                    code=_dedent(lines[start - 1 : end]),
                    docstring=ast.get_docstring(child) or "",
                    start_line=start,
                    end_line=end,
                )
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):  # under if/try/with...
                yield from visit(child, prefix)

    yield from visit(tree, "")


def _dedent(lines: list[str]) -> str:
    """Remove the first line's indentation from every line that has it (lines in strings may not)."""
    indent = lines[0][: len(lines[0]) - len(lines[0].lstrip(" \t"))]
    return "\n".join(
        line[len(indent) :] if line.startswith(indent) else ("" if not line.strip() else line)
        for line in lines
    )


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _syntax_message(exc: Exception) -> str:
    if isinstance(exc, SyntaxError):
        return f"Python syntax error: {exc.msg} (line {exc.lineno})"
    if isinstance(exc, RecursionError):
        return "Python syntax error: code is nested too deeply to parse"
    return f"Python syntax error: {exc}"


def _blacklist_pattern(words: list[str]) -> re.Pattern[str] | None:
    """Whole words, any case; '_' and digits separate words too, so load_image matches but profile not."""
    if not words:
        return None
    alternatives = sorted((r"\s+".join(map(re.escape, w.split())) for w in words), key=len, reverse=True)
    return re.compile(r"(?<![A-Za-z])(?:" + "|".join(alternatives) + r")(?![A-Za-z])", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _language_for_suffix(suffix: str) -> str | None:
    # Cached per suffix: Pygments tries every lexer's patterns, too slow for 100K files.
    try:
        lexer = get_lexer_for_filename("file" + suffix)
    except ClassNotFound:
        return None
    return _LANGUAGES.get(lexer.aliases[0]) if lexer.aliases else None


def _language_for(path: str) -> str | None:
    suffix = os.path.splitext(path)[1]
    return _language_for_suffix(suffix) if suffix else None


def _read_text(path: Path, max_bytes: int) -> str:
    """A source file's text, or _FileProblem saying why it cannot be used."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise _FileProblem("symbolic link; links are not followed")
        if not stat.S_ISREG(info.st_mode):
            raise _FileProblem("not a regular file")
        if info.st_size > max_bytes:  # checked before reading: never load a huge file
            raise _FileProblem(f"file is {_mb(info.st_size)}, over the {_mb(max_bytes)} limit")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise _FileProblem(f"cannot read the file: {exc.strerror or exc}")
    if len(data) > max_bytes:
        raise _FileProblem(f"file is over the {_mb(max_bytes)} limit")
    if b"\x00" in data:
        raise _FileProblem("binary file (contains NUL bytes), not source code")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _FileProblem(f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})")
    return _normalize_newlines(text)


def _detect_license(root: Path) -> str:
    """SPDX id of the license file in `root`, "unknown" when there is one we don't recognize, else ""."""
    try:
        candidates = sorted(p for p in root.iterdir() if p.name.lower() in _LICENSE_FILES and p.is_file())
    except OSError:
        return ""
    if not candidates:
        return ""
    try:
        with open(candidates[0], "rb") as f:
            text = " ".join(f.read(64 * 1024).decode("utf-8", "replace").split())
    except OSError:
        return "unknown"
    upper = text.upper()
    if "GNU AFFERO GENERAL PUBLIC LICENSE" in upper:
        return "AGPL-3.0"
    if "GNU LESSER GENERAL PUBLIC LICENSE" in upper:
        return "LGPL-2.1" if "VERSION 2.1" in upper else "LGPL-3.0"
    if "GNU GENERAL PUBLIC LICENSE" in upper:
        return "GPL-2.0" if "VERSION 2," in upper else "GPL-3.0"
    if "APACHE LICENSE" in upper and "VERSION 2.0" in upper:
        return "Apache-2.0"
    if "MOZILLA PUBLIC LICENSE" in upper and "2.0" in upper:
        return "MPL-2.0"
    if "MIT LICENSE" in upper or "PERMISSION IS HEREBY GRANTED, FREE OF CHARGE" in upper:
        return "MIT"
    if "REDISTRIBUTION AND USE IN SOURCE AND BINARY FORMS" in upper:
        return (
            "BSD-3-Clause" if "NEITHER THE NAME" in upper or "ENDORSE OR PROMOTE" in upper else "BSD-2-Clause"
        )
    if "ISC LICENSE" in upper or "PERMISSION TO USE, COPY, MODIFY, AND/OR DISTRIBUTE" in upper:
        return "ISC"
    if "UNENCUMBERED SOFTWARE RELEASED INTO THE PUBLIC DOMAIN" in upper:
        return "Unlicense"
    return "unknown"


def _git_origin_repo(checkout: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return _repo_from_url(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else ""


def _repo_from_url(url: str) -> str:
    """'https://github.com/owner/name.git' or 'git@host:owner/name' -> 'owner/name'."""
    parts = [p for p in re.split(r"[/:]", url.rstrip("/")) if p]
    name = parts[-1].removesuffix(".git") if parts else url
    return f"{parts[-2]}/{name}" if len(parts) >= 3 else name


def _strip_suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in _ARCHIVE_SUFFIXES + _JSONL_SUFFIXES + (".parquet", ".git"):
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _unsafe_member(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "path goes outside the archive ('..')"
    return None


def _member_target(dest: Path, name: str) -> Path:
    """Where a member goes; checked again after resolving, so nothing is ever written outside `dest`."""
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()) or target == dest.resolve():
        raise _FileProblem("path goes outside the archive")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy_limited(src: IO[bytes], target: Path, declared: int) -> int:
    """Copy at most the member's declared size; a member that yields more is a bomb and is removed."""
    written = 0
    try:
        with open(target, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > declared:
                    raise _FileProblem(
                        "member unpacks to more bytes than its header declares (possible decompression bomb)"
                    )
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return written


def _bomb_message(what: str, ratio: int) -> str:
    return f"refused archive member: {what}, over the {ratio}:1 limit (possible decompression bomb)"


def _over_budget_message(budget: int) -> str:
    return (
        f"refused archive member: the archive would unpack to more than {_mb(budget)}, the limit "
        "(possible decompression bomb)"
    )


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _count_lines(path: Path) -> int:
    lines = 0
    with _open_maybe_gzip(path) as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
    return lines


def _limited_lines(f: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """Lines of a binary file; None for a line over `limit` bytes, which is skipped without being held."""
    while line := f.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := f.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield line


def _parse_json_line(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _FileProblem(f"not UTF-8 text (invalid byte at offset {exc.start})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _FileProblem(f"not valid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        raise _FileProblem("not valid JSON (nested too deeply)")


_MAX_LINE = 2**31 - 1  # an integer column on PostgreSQL


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return None
    return number if 0 < number <= _MAX_LINE else None


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean(value: Any, max_length: int) -> str:
    """A string the database accepts: no NUL, no lone surrogates (odd file names), within the column."""
    text = str(value or "").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")[:max_length]


def _relative(path: str | bytes, root: Path) -> str:
    return Path(os.fsdecode(path)).relative_to(root).as_posix() if path else ""


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / (1024 * 1024):.1f} MB"
