"""Tests of the ingest stage: extraction, filters, dedup, provenance, sources and every kind of bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import LeanMinHash, MinHashLSH

from curation import ingest
from curation.ingest import (
    BLACKLIST,
    content_hash,
    create_ingest_run,
    default_options,
    detect_kind,
    run_ingest,
    validate_options,
)
from curation.models import CodeSample, CodeSource, IngestRun

pytestmark = pytest.mark.django_db

PY_MODULE = textwrap.dedent(
    '''\
    import functools


    def add_numbers(first, second):
        """Return the sum of two numbers."""
        total = first + second
        return total


    class Account:
        """A bank account."""

        @functools.lru_cache(maxsize=None)
        @staticmethod
        def interest_rate(years):
            """The yearly rate for a deposit of `years`."""
            return 0.01 * years + 0.02

        async def fetch_balance(self, client):
            response = await client.get("/balance")
            return response.json()["balance"]

        class Ledger:
            def entries_between(self, start, stop):
                def in_range(entry):
                    return start <= entry.when < stop

                return [entry for entry in self.entries if in_range(entry)]


    try:
        from fastjson import dumps
    except ImportError:

        def dumps(value):
            return repr(value)
    '''
)

GOOD_PY = textwrap.dedent(
    '''\
    def celsius_to_fahrenheit(celsius):
        """Convert a temperature from Celsius to Fahrenheit."""
        return celsius * 9 / 5 + 32
    '''
)

GO_SOURCE = textwrap.dedent(
    """\
    package main

    import "fmt"

    func main() {
    \tfmt.Println("hello, world")
    }
    """
)

JS_SOURCE = "export function square(x) {\n  // multiply the number by itself\n  return x * x;\n}\n"

# Long enough that one renamed token changes few of its 5-gram shingles (Jaccard stays well above 0.7).
NEAR_DUP_BASE = textwrap.dedent(
    """\
    def merge_sorted_lists(left, right):
        result = []
        i = j = 0
        while i < len(left) and j < len(right):
            if left[i] <= right[j]:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
        result.extend(left[i:])
        result.extend(right[j:])
        return result
    """
)
UNRELATED = textwrap.dedent(
    '''\
    def count_vowels(text):
        """Count the vowels in a piece of text."""
        return sum(1 for ch in text.lower() if ch in "aeiou")
    '''
)


def _write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _ingest(location, **kwargs) -> IngestRun:
    run = create_ingest_run(location, **kwargs)
    return run_ingest(run.pk)


def _errors(run: IngestRun) -> dict[str, str]:
    return {entry["path"]: entry["error"] for entry in run.report["errors"]}


def _names(run: IngestRun) -> set[str]:
    return set(CodeSample.objects.filter(ingest_run=run).values_list("func_name", flat=True))


def _good_tree(root: Path) -> Path:
    _write(root, "good.py", GOOD_PY)
    return root


def _assert_good_kept(run: IngestRun) -> None:
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert "celsius_to_fahrenheit" in _names(run)


# ---------------------------------------------------------------------------------------------------------
# Extraction


def test_python_functions_methods_async_decorators_and_line_ranges(tmp_path):
    _write(tmp_path, "pkg/bank.py", PY_MODULE)
    run = _ingest(tmp_path, options={"min_chars": 10})
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    samples = {s.func_name: s for s in CodeSample.objects.filter(ingest_run=run)}
    # Classes are not samples; a function inside a function stays part of its enclosing one.
    assert set(samples) == {
        "add_numbers",
        "Account.interest_rate",
        "Account.fetch_balance",
        "Account.Ledger.entries_between",
        "dumps",  # functions under try/except, if and with blocks count too
    }
    lines = PY_MODULE.split("\n")

    rate = samples["Account.interest_rate"]
    assert rate.start_line == lines.index("    @functools.lru_cache(maxsize=None)") + 1  # decorators included
    assert rate.end_line == lines.index("        return 0.01 * years + 0.02") + 1
    assert rate.code.startswith("@functools.lru_cache(maxsize=None)\n@staticmethod\ndef interest_rate(")
    assert rate.docstring == "The yearly rate for a deposit of `years`."

    fetch = samples["Account.fetch_balance"]
    assert fetch.code.startswith("async def fetch_balance(self, client):\n    response = await")
    assert fetch.docstring == ""

    nested = samples["Account.Ledger.entries_between"]
    assert nested.code.startswith("def entries_between(self, start, stop):\n    def in_range(entry):")
    assert "in_range" not in {name.rsplit(".", 1)[-1] for name in samples}

    add = samples["add_numbers"]
    assert (add.start_line, add.end_line) == (4, 7)
    assert add.code == "\n".join(lines[3:7])
    assert add.docstring == "Return the sum of two numbers."
    assert all(s.language == "python" and s.path == "pkg/bank.py" for s in samples.values())
    assert run.report["languages"] == {"python": 5}


def test_other_languages_are_stored_whole_with_their_language(tmp_path):
    _write(tmp_path, "cmd/main.go", GO_SOURCE)
    _write(tmp_path, "web/square.js", JS_SOURCE)
    _write(tmp_path, "README.md", "# A readme that is long enough to pass the length filter, surely.\n")
    _write(tmp_path, "data.csv", "a,b\n1,2\n")
    _write(tmp_path, "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    run = _ingest(tmp_path)
    by_lang = {s.language: s for s in CodeSample.objects.filter(ingest_run=run)}
    assert set(by_lang) == {"go", "javascript"}
    go = by_lang["go"]
    assert go.code == GO_SOURCE and go.path == "cmd/main.go" and go.func_name == ""
    assert (go.start_line, go.end_line) == (1, GO_SOURCE.count("\n") + 1)
    assert run.report["files_seen"] == 5
    assert run.report["skipped_non_code"] == 3  # silently: no error entries for them
    assert run.report["errors"] == []
    assert run.report["languages"] == {"go": 1, "javascript": 1}


def test_vcs_dependency_and_virtualenv_folders_are_skipped(tmp_path):
    _good_tree(tmp_path)
    for folder in (".git", "node_modules/pkg", "__pycache__", "venv/lib", "env-3.11/lib"):
        _write(tmp_path, f"{folder}/hidden.py", UNRELATED)
    _write(tmp_path, "env-3.11/pyvenv.cfg", "home = /usr/bin\n")
    run = _ingest(tmp_path)
    assert _names(run) == {"celsius_to_fahrenheit"}
    assert run.report["files_seen"] == 1


# ---------------------------------------------------------------------------------------------------------
# Filters


def test_length_window_drops_too_short_and_too_long(tmp_path):
    body = "\n".join(f"    value_{i} = {i} * 2" for i in range(60))
    huge = f"def huge():\n{body}\n    return value_0\n"
    _write(tmp_path, "m.py", f"def tiny():\n    return 1\n\n\n{huge}\n\n{GOOD_PY}")
    run = _ingest(tmp_path)
    assert run.report["dropped"] == {"too_short": 1, "too_long": 1}
    assert _names(run) == {"celsius_to_fahrenheit"}
    assert run.report["candidates"] == 3 and run.report["kept"] == 1


def test_length_window_follows_the_options(tmp_path):
    _write(tmp_path, "m.py", "def tiny():\n    return 1\n")
    run = _ingest(tmp_path, options={"min_chars": 5, "max_chars": 100})
    assert _names(run) == {"tiny"}
    assert run.options["min_chars"] == 5 and run.options["max_chars"] == 100


def test_blacklist_matches_whole_words_in_any_case(tmp_path):
    _write(
        tmp_path,
        "m.py",
        textwrap.dedent(
            '''\
            def read_settings(path):
                """Open the File and return its text."""
                return open(path).read()


            def thumbnail(size):
                scaled = load_image(size)
                return scaled.crop((0, 0, size, size))


            def navigate(browser):
                # Go  to the start page and wait for it to load completely
                return browser.home()


            def user_profile(user):
                """Build the profile of a user (profile is not a blacklisted word)."""
                return {"name": user.name}
            '''
        ),
    )
    run = _ingest(tmp_path)
    assert run.report["dropped"] == {"blacklisted": 3}
    assert _names(run) == {"user_profile"}


def test_custom_blacklist_replaces_the_default(tmp_path):
    _write(tmp_path, "m.py", GOOD_PY)
    run = _ingest(tmp_path, options={"blacklist": ["fahrenheit"]})
    assert run.report["dropped"] == {"blacklisted": 1}


def test_python_file_that_does_not_parse_is_dropped_and_reported(tmp_path):
    _good_tree(tmp_path)
    _write(tmp_path, "legacy.py", 'def shout(text):\n    print "loud: %s" % text.upper()\n')
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert run.report["dropped"] == {"syntax_error": 1}
    assert _errors(run)["legacy.py"].startswith("Python syntax error:")
    assert "(line 2)" in _errors(run)["legacy.py"]


# ---------------------------------------------------------------------------------------------------------
# Dedup


def test_exact_duplicates_differing_only_in_whitespace_are_dropped(tmp_path):
    _write(tmp_path, "a.py", GOOD_PY)
    messy = GOOD_PY.replace("\n", "   \r\n").replace('"""\r\n', '"""\r\n\r\n\t \r\n')
    _write(tmp_path, "b.py", messy.encode())
    run = _ingest(tmp_path)
    assert run.report["kept"] == 1
    assert run.report["dropped"] == {"exact_duplicate": 1}
    assert content_hash(GOOD_PY) == content_hash(messy)
    assert CodeSample.objects.get().path == "a.py"  # the first one in path order wins


def test_near_duplicate_with_one_renamed_token_is_dropped_unrelated_code_kept(tmp_path):
    _write(tmp_path, "a.py", NEAR_DUP_BASE)
    _write(tmp_path, "b.py", NEAR_DUP_BASE.replace("merge_sorted_lists", "merge_two_lists"))
    _write(tmp_path, "c.py", UNRELATED)
    run = _ingest(tmp_path)
    assert run.report["dropped"] == {"near_duplicate": 1}
    assert _names(run) == {"merge_sorted_lists", "count_vowels"}
    sample = CodeSample.objects.get(func_name="count_vowels")
    assert len(bytes(sample.minhash)) == 4 * 256  # uint32 × permutations, reusable by later runs


def test_near_duplicates_are_caught_against_the_corpus_of_earlier_runs(tmp_path):
    _write(tmp_path, "first/a.py", NEAR_DUP_BASE)
    _write(tmp_path, "second/b.py", NEAR_DUP_BASE.replace("merge_sorted_lists", "merge_lists"))
    _write(tmp_path, "second/c.py", UNRELATED)
    assert _ingest(tmp_path / "first").report["kept"] == 1
    run = _ingest(tmp_path / "second")
    assert run.report["dropped"] == {"near_duplicate": 1}
    assert _names(run) == {"count_vowels"}


def _minhashlsh_decisions(signatures, corpus_size: int = 0) -> list[bool]:
    """What datasketch's MinHashLSH says, signature by signature, after indexing the first corpus_size."""
    lsh = MinHashLSH(threshold=0.7, num_perm=256)
    decisions = []
    for key, signature in enumerate(signatures):
        minhash = LeanMinHash(seed=1, hashvalues=signature, scheme="affine32")
        near = key >= corpus_size and bool(lsh.query(minhash))
        if not near:
            lsh.insert(key, minhash)
        decisions.append(near)
    return decisions[corpus_size:]


def test_band_index_finds_what_datasketch_minhashlsh_finds():
    variants, code = [NEAR_DUP_BASE], NEAR_DUP_BASE
    for old, new in [("result", "merged"), ("left", "first"), ("right", "second"), ("+= 1", "= i + 1")] * 3:
        code = code.replace(old, new, 1)
        variants.append(code)
    variants += [UNRELATED, GOOD_PY, PY_MODULE, UNRELATED.replace("text", "words")]
    signatures = ingest._signatures(variants, 256, 5)
    expected = _minhashlsh_decisions(signatures)
    assert True in expected and False in expected
    assert ingest._BandIndex(0.7, 256).check_and_add(signatures) == expected

    index = ingest._BandIndex(0.7, 256)  # signatures from the corpus (the sorted array) answer the same
    index.add_corpus(signatures[:3])
    index.compact()
    assert index.check_and_add(signatures[3:]) == _minhashlsh_decisions(signatures, corpus_size=3)


def test_near_dedup_can_be_turned_off_with_threshold_one(tmp_path):
    _write(tmp_path, "a.py", NEAR_DUP_BASE)
    _write(tmp_path, "b.py", NEAR_DUP_BASE.replace("merge_sorted_lists", "merge_two_lists"))
    run = _ingest(tmp_path, options={"near_dup_threshold": 1.0})
    assert run.report["kept"] == 2


def test_reingesting_the_same_source_adds_nothing(tmp_path):
    _write(tmp_path, "bank.py", PY_MODULE)
    _write(tmp_path, "main.go", GO_SOURCE)
    first = _ingest(tmp_path, options={"min_chars": 10})
    count = CodeSample.objects.count()
    assert first.kept_count == count == 6
    second = _ingest(tmp_path, options={"min_chars": 10})
    assert second.source_id == first.source_id
    assert CodeSource.objects.count() == 1
    assert CodeSample.objects.count() == count
    assert second.kept_count == 0
    assert second.report["dropped"] == {"exact_duplicate": count}


# ---------------------------------------------------------------------------------------------------------
# Provenance and license


def test_samples_carry_their_provenance(tmp_path):
    root = tmp_path / "weather-tools"
    _write(root, "src/convert.py", GOOD_PY)
    _write(root, "LICENSE", "MIT License\n\nCopyright (c) 2024 Somebody\n\nPermission is hereby granted, ...")
    run = _ingest(root, name="Weather tools")
    sample = CodeSample.objects.get()
    assert sample.source == run.source and sample.ingest_run == run
    assert (sample.repo, sample.path, sample.license) == ("weather-tools", "src/convert.py", "MIT")
    assert (sample.start_line, sample.end_line) == (1, 3)
    assert sample.n_chars == len(sample.code) == len(GOOD_PY.rstrip("\n"))
    assert sample.content_hash == content_hash(sample.code)
    assert sample.location == "weather-tools/src/convert.py:1-3"
    run.source.refresh_from_db()
    assert (run.source.name, run.source.kind, run.source.license) == ("Weather tools", "directory", "MIT")
    assert run.source.location == str(root.resolve())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MIT License\n\nPermission is hereby granted, free of charge, to any person", "MIT"),
        ("                 Apache License\n           Version 2.0, January 2004", "Apache-2.0"),
        ("GNU GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007", "GPL-3.0"),
        ("GNU GENERAL PUBLIC LICENSE\n Version 2, June 1991", "GPL-2.0"),
        (
            "Redistribution and use in source and binary forms, with or without modification ...\n"
            "3. Neither the name of the copyright holder nor the names of its contributors",
            "BSD-3-Clause",
        ),
        ("All rights reserved. Ask us before using this.", "unknown"),
    ],
)
def test_license_detection(tmp_path, text, expected):
    _write(tmp_path, "COPYING", text)
    assert ingest._detect_license(tmp_path) == expected


def test_no_license_file_means_blank_license(tmp_path):
    _good_tree(tmp_path)
    _ingest(tmp_path)
    assert CodeSample.objects.get().license == ""


# ---------------------------------------------------------------------------------------------------------
# Source kinds


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("https://github.com/owner/name.git", "git"),
        ("git@github.com:owner/name.git", "git"),
        ("corpus.zip", "archive"),
        ("corpus.tar.gz", "archive"),
        ("corpus.tgz", "archive"),
        ("corpus.tar", "archive"),
        ("python_train_0.jsonl.gz", "jsonl"),
        ("rows.jsonl", "jsonl"),
        ("rows.json", "jsonl"),
        ("train.parquet", "parquet"),
    ],
)
def test_detect_kind(name, kind):
    assert detect_kind(name) == kind


def test_detect_kind_of_folders_and_unknown_files(tmp_path):
    assert detect_kind(tmp_path) == "directory"
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    assert detect_kind(tmp_path / "repo") == "git"
    _write(tmp_path, "notes.docx", "x")
    with pytest.raises(ValueError, match="cannot tell what kind of source"):
        detect_kind(tmp_path / "notes.docx")
    with pytest.raises(ValueError, match="does not exist"):
        detect_kind(tmp_path / "missing")


def test_a_missing_folder_fails_the_run_clearly(tmp_path):
    run = _ingest(tmp_path / "missing", kind="directory")
    assert run.status == IngestRun.Status.FAILED
    assert "does not exist" in run.error


def test_a_finished_run_is_not_run_again(tmp_path):
    _good_tree(tmp_path)
    run = _ingest(tmp_path)
    again = run_ingest(run.pk)
    assert again.status == IngestRun.Status.SUCCEEDED and again.report == run.report
    assert CodeSample.objects.count() == 1


def test_progress_is_reported_by_phase(tmp_path):
    _good_tree(tmp_path)
    _write(tmp_path, "main.go", GO_SOURCE)
    calls = []
    run = create_ingest_run(tmp_path)
    run_ingest(run.pk, on_progress=lambda phase, done, total: calls.append((phase, done, total)))
    assert {phase for phase, _, _ in calls} >= {"indexing", "scanning", "extracting"}
    assert ("extracting", 2, 2) in calls
    run.refresh_from_db()
    assert run.phase == "extracting" and run.percent == 100


def test_cancelling_stops_the_run_and_keeps_what_was_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "_BATCH_SIZE", 1)
    _write(tmp_path, "a.py", GOOD_PY)
    _write(tmp_path, "b.py", UNRELATED)
    run = create_ingest_run(tmp_path)

    def cancel(phase, done, total):
        if phase == "extracting":
            IngestRun.objects.filter(pk=run.pk).update(status=IngestRun.Status.CANCELLED)

    run = run_ingest(run.pk, on_progress=cancel)
    assert run.status == IngestRun.Status.CANCELLED
    assert run.kept_count == 1 and CodeSample.objects.count() == 1


def _git(*args, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_checkout_and_git_url(tmp_path):
    repo = tmp_path / "tools"
    _write(repo, "convert.py", GOOD_PY)
    _write(repo, "LICENSE", "Apache License\nVersion 2.0, January 2004\n")
    _git("init", "-q", cwd=repo)
    _git("remote", "add", "origin", "https://github.com/acme/tools.git", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "init", cwd=repo)

    run = _ingest(repo)  # a checkout is read in place; its .git folder is skipped
    assert run.source.kind == "git" and run.status == IngestRun.Status.SUCCEEDED, run.error
    sample = CodeSample.objects.get()
    assert (sample.repo, sample.license, sample.path) == ("acme/tools", "Apache-2.0", "convert.py")

    _write(repo, "more.py", UNRELATED)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "more", cwd=repo)
    run = _ingest(f"file://{repo}")  # a URL is cloned (depth 1) into a temporary folder
    assert run.source.kind == "git" and run.status == IngestRun.Status.SUCCEEDED, run.error
    assert _names(run) == {"count_vowels"}
    assert run.report["dropped"] == {"exact_duplicate": 1}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_failed_clone_fails_the_run_clearly(tmp_path):
    run = _ingest(f"file://{tmp_path}/no-such-repo.git")
    assert run.status == IngestRun.Status.FAILED
    assert run.error.startswith(f"git clone of file://{tmp_path}/no-such-repo.git failed:")


# ---------------------------------------------------------------------------------------------------------
# JSONL and Parquet (CodeSearchNet shape)


def _csn_row(code: str, **extra) -> dict:
    return {"code": code, "language": "python", "repo": "acme/tools", "path": "tools/x.py", **extra}


def test_jsonl_rows_in_codesearchnet_shape(tmp_path):
    rows = [
        _csn_row(GOOD_PY, func_name="celsius_to_fahrenheit", docstring="Convert.", license="MIT", end_line=3),
        {  # the original CodeSearchNet release's / HF dataset's field names
            "original_string": UNRELATED,
            "language": "Python",
            "func_documentation_string": "Count the vowels.",
            "repository_name": "acme/text",
            "func_path_in_repository": "text/vowels.py",
            "func_name": "count_vowels",
        },
        _csn_row("def broken(:\n    return 'this is python 2 or worse, it does not parse'"),
        {"code": JS_SOURCE, "language": "javascript", "func_name": "square"},
    ]
    path = tmp_path / "python_train_0.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    run = _ingest(path)
    assert run.source.kind == "jsonl" and run.status == IngestRun.Status.SUCCEEDED, run.error
    assert run.report["dropped"] == {"syntax_error": 1}  # a row that does not parse is a drop, not an error
    assert run.report["errors"] == []
    good = CodeSample.objects.get(func_name="celsius_to_fahrenheit")
    assert (good.repo, good.path, good.license) == ("acme/tools", "tools/x.py", "MIT")
    assert (good.docstring, good.start_line, good.end_line) == ("Convert.", None, 3)
    vowels = CodeSample.objects.get(func_name="count_vowels")
    assert (vowels.language, vowels.repo, vowels.path) == ("python", "acme/text", "text/vowels.py")
    assert vowels.docstring == "Count the vowels."
    assert CodeSample.objects.get(func_name="square").language == "javascript"
    assert run.report["languages"] == {"javascript": 1, "python": 2}


def test_malformed_jsonl_lines_are_reported_with_their_line_number(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [
        json.dumps(_csn_row(GOOD_PY, func_name="celsius_to_fahrenheit")),
        '{"code": "def f(): pass", "language": ',
        "",
        json.dumps({"language": "python", "func_name": "no_code"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"code": 42, "language": "python"}),
        json.dumps(_csn_row(UNRELATED, func_name="count_vowels")),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"code": "caf\xe9", "language": "go"}\n')
    run = _ingest(path)
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert _names(run) == {"celsius_to_fahrenheit", "count_vowels"}
    errors = [e["error"] for e in run.report["errors"]]
    assert {e["path"] for e in run.report["errors"]} == {"rows.jsonl"}
    assert errors[0].startswith("line 2: not valid JSON")
    assert errors[1] == "line 4: missing required field(s): code"
    assert errors[2] == "line 5: expected a JSON object with 'code' and 'language'"
    assert errors[3] == "line 6: field 'code' must be a string, got int"
    assert errors[4].startswith("line 8: not UTF-8 text")
    assert len(errors) == 5


def test_rows_the_database_would_refuse_are_reported_or_cleaned(tmp_path, settings):
    settings.INGEST_MAX_FILE_BYTES = 2000
    path = tmp_path / "rows.jsonl"
    lines = [
        json.dumps(_csn_row(GOOD_PY + "\x00", func_name="nul")),
        '{"code": "def f():\\n    return 1  # a lone surrogate: \\ud800", "language": "python"}',
        json.dumps(_csn_row("x = 1\n" * 400)),  # a line over the size limit is skipped, not read whole
        json.dumps(_csn_row(GOOD_PY, func_name="f" * 400, path="a\x00b.py")),
    ]
    path.write_text("\n".join(lines) + "\n")
    run = _ingest(path)
    assert [e["error"] for e in run.report["errors"]] == [
        "line 1: field 'code' contains NUL characters",
        "line 2: field 'code' is not valid Unicode text",
        "line 3: longer than the 0.0 MB limit; skipped",
    ]
    sample = CodeSample.objects.get()
    assert (sample.func_name, sample.path) == ("f" * 300, "ab.py")  # clipped to the column, NUL removed


def test_a_file_that_is_not_jsonl_at_all_is_reported(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(f"just some prose, line {i}" for i in range(100)))
    run = _ingest(path)
    assert run.status == IngestRun.Status.SUCCEEDED and run.kept_count == 0
    assert run.report["errors"][-1] == {
        "path": "notes.jsonl",
        "error": "not JSON Lines: none of the first 20 lines is a usable row",
    }
    assert len(run.report["errors"]) == 21


def test_a_truncated_gzip_jsonl_keeps_the_rows_before_the_damage(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    filler = (json.dumps({"code": "x", "language": "go", "noise": os.urandom(64).hex()}) for _ in range(2000))
    lines = [json.dumps(_csn_row(GOOD_PY, func_name="celsius_to_fahrenheit")), *filler]
    data = gzip.compress("\n".join(lines).encode())
    path.write_bytes(data[: len(data) // 2])
    run = _ingest(path)
    _assert_good_kept(run)
    assert _errors(run)["rows.jsonl.gz"].startswith("cannot read the file: Compressed file ended before")


def test_parquet_in_codesearchnet_shape(tmp_path):
    path = tmp_path / "train.parquet"
    table = pa.table(
        {
            "func_code_string": [GOOD_PY, UNRELATED, "x = 1"],
            "language": ["python", "python", "python"],
            "func_name": ["celsius_to_fahrenheit", "count_vowels", "tiny"],
            "repository_name": ["acme/tools", "acme/text", "acme/x"],
            "func_path_in_repository": ["a.py", "b.py", "c.py"],
            "license": ["MIT", None, None],
            "code_tokens": [["a"], ["b"], ["c"]],  # columns we do not use are not read
        }
    )
    pq.write_table(table, path, row_group_size=2)
    run = _ingest(path)
    assert run.source.kind == "parquet" and run.status == IngestRun.Status.SUCCEEDED, run.error
    assert run.report["dropped"] == {"too_short": 1}
    good = CodeSample.objects.get(func_name="celsius_to_fahrenheit")
    assert (good.repo, good.path, good.license) == ("acme/tools", "a.py", "MIT")
    assert CodeSample.objects.get(func_name="count_vowels").license == ""


def test_parquet_missing_required_columns_names_them(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"docstring": ["a"], "func_name": ["f"]}), path)
    run = _ingest(path)
    assert run.status == IngestRun.Status.SUCCEEDED and run.kept_count == 0
    assert _errors(run) == {
        "train.parquet": "missing required column(s): code, language (columns found: docstring, func_name)"
    }


def test_a_file_that_is_not_parquet_at_all_is_reported(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    run = _ingest(path)
    assert run.status == IngestRun.Status.SUCCEEDED
    assert _errors(run)["train.parquet"].startswith("not a valid Parquet file:")


# ---------------------------------------------------------------------------------------------------------
# Bad files in a folder: each is reported and the good code next to it is still ingested


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    _good_tree(tmp_path)
    _write(tmp_path, "locked.py", UNRELATED)
    real_open = open

    def deny_locked(path, *args, **kwargs):
        if str(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    # The module's own `open` (a global shadows the builtin): the read fails as a permission error would.
    monkeypatch.setattr(ingest, "open", deny_locked, raising=False)
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert _errors(run) == {"locked.py": "cannot read the file: Permission denied"}


def test_file_and_folder_without_read_permission_are_reported(tmp_path):
    probe = _write(tmp_path, "probe", "x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        pytest.skip("this user (root) reads files whatever their permissions")
    except PermissionError:
        probe.unlink()
    _good_tree(tmp_path)
    _write(tmp_path, "locked.py", UNRELATED).chmod(0)
    _write(tmp_path, "closed/inner.py", UNRELATED)
    (tmp_path / "closed").chmod(0)
    try:
        run = _ingest(tmp_path)
    finally:
        (tmp_path / "closed").chmod(0o755)  # so that pytest can remove it
    _assert_good_kept(run)
    assert _errors(run) == {
        "locked.py": "cannot read the file: Permission denied",
        "closed": "cannot list the folder: Permission denied",
    }


def test_fifo_and_broken_symlink_are_reported_without_hanging(tmp_path):
    _good_tree(tmp_path)
    os.mkfifo(tmp_path / "pipe.py")  # opening it for reading would block forever
    (tmp_path / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert _errors(run) == {
        "pipe.py": "not a regular file",
        "dangling.py": "symbolic link; links are not followed",
    }


def test_binary_file_is_reported(tmp_path):
    _good_tree(tmp_path)
    _write(tmp_path, "blob.py", b"def f():\n    return 1\n\x00\x01\x02" * 10)
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert _errors(run) == {"blob.py": "binary file (contains NUL bytes), not source code"}


def test_non_utf8_file_is_reported(tmp_path):
    _good_tree(tmp_path)
    latin = 'def greet():\n    return "café au lait, s\'il vous plaît"\n'.encode("latin-1")
    _write(tmp_path, "latin.py", latin)
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert _errors(run) == {"latin.py": "not UTF-8 text (invalid byte 0xe9 at offset 28)"}


def test_file_over_the_size_limit_is_reported_without_reading_it(tmp_path, monkeypatch):
    _good_tree(tmp_path)
    with open(tmp_path / "huge.py", "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: no disk used
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert _errors(run) == {"huge.py": "file is 50.0 MB, over the 2.0 MB limit"}


def test_errors_are_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "_MAX_ERRORS", 2)
    _good_tree(tmp_path)
    for i in range(5):
        _write(tmp_path, f"blob{i}.py", b"\x00")
    run = _ingest(tmp_path)
    _assert_good_kept(run)
    assert len(run.report["errors"]) == 2 and run.report["errors_omitted"] == 3


# ---------------------------------------------------------------------------------------------------------
# Archives


def test_zip_archive_of_a_github_style_folder(tmp_path):
    path = tmp_path / "tools-main.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tools-main/", "")
        zf.writestr("tools-main/src/convert.py", GOOD_PY)
        zf.writestr("tools-main/LICENSE", "MIT License\n")
        zf.writestr("tools-main/docs/index.md", "# docs\n")
    run = _ingest(path)
    assert run.source.kind == "archive" and run.status == IngestRun.Status.SUCCEEDED, run.error
    sample = CodeSample.objects.get()
    assert (sample.repo, sample.path, sample.license) == ("tools-main", "src/convert.py", "MIT")
    assert run.report["skipped_non_code"] == 2


def _zip_with(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16  # S_IFLNK
            zf.writestr(info, "/etc/passwd")
    return path


def test_zip_slip_members_are_refused(tmp_path):
    absolute = str(tmp_path / "abs_evil.py")
    path = _zip_with(
        tmp_path / "slip.zip",
        {"pkg/good.py": GOOD_PY.encode(), "../evil.py": UNRELATED.encode(), absolute: UNRELATED.encode()},
        symlink="pkg/link.py",
    )
    (tmp_path / "unpack-here").mkdir()
    run = _ingest(path)
    _assert_good_kept(run)
    assert _errors(run) == {
        "../evil.py": "refused archive member: path goes outside the archive ('..')",
        absolute: "refused archive member: absolute path",
        "pkg/link.py": "refused archive member: symbolic links are not unpacked",
    }
    assert not (tmp_path / "evil.py").exists() and not Path(absolute).exists()
    assert _names(run) == {"celsius_to_fahrenheit"}


def test_tar_slip_members_and_links_are_refused(tmp_path):
    absolute = str(tmp_path / "abs_evil.py")
    path = tmp_path / "slip.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in [("pkg/good.py", GOOD_PY), ("../evil.py", UNRELATED), (absolute, UNRELATED)]:
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tf.addfile(info, io.BytesIO(data.encode()))
        link = tarfile.TarInfo("pkg/passwd.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        hard = tarfile.TarInfo("pkg/hard.py")
        hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/passwd"
        tf.addfile(hard)
        fifo = tarfile.TarInfo("pkg/pipe.py")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
    run = _ingest(path)
    _assert_good_kept(run)
    assert _errors(run) == {
        "../evil.py": "refused archive member: path goes outside the archive ('..')",
        absolute: "refused archive member: absolute path",
        "pkg/passwd.py": "refused archive member: links are not unpacked",
        "pkg/hard.py": "refused archive member: links are not unpacked",
        "pkg/pipe.py": "refused archive member: not a regular file",
    }
    assert not (tmp_path / "evil.py").exists() and not Path(absolute).exists()


def test_zip_bomb_is_refused_by_its_declared_ratio(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.py", GOOD_PY)
        with zf.open("bomb.py", "w") as member:  # 300 MB of zeros, written in chunks: ~0.3 MB on disk
            zeros = bytes(1024 * 1024)
            for _ in range(300):
                member.write(zeros)
        zf.writestr("after.py", UNRELATED)  # zip members are independent: the next one is still read
    run = _ingest(path)
    _assert_good_kept(run)
    assert _names(run) == {"celsius_to_fahrenheit", "count_vowels"}
    error = _errors(run)["bomb.py"]
    assert error.startswith("refused archive member: compression ratio 1,0")
    assert error.endswith(":1, over the 200:1 limit (possible decompression bomb)")


def test_zip_over_the_total_size_limit_is_refused(tmp_path, settings):
    settings.INGEST_MAX_ARCHIVE_BYTES = 64 * 1024
    big = os.urandom(100 * 1024)  # incompressible: the ratio check does not fire, the total does
    path = _zip_with(tmp_path / "big.zip", {"good.py": GOOD_PY.encode(), "big.bin": big})
    run = _ingest(path)
    _assert_good_kept(run)
    assert _errors(run) == {
        "big.bin": "refused archive member: the archive would unpack to more than 0.1 MB, the limit "
        "(possible decompression bomb)"
    }


def test_zip_member_larger_than_its_header_says_is_not_trusted(tmp_path):
    path = _zip_with(tmp_path / "liar.zip", {"good.py": GOOD_PY.encode(), "liar.py": bytes(3 * 1024 * 1024)})
    data = bytearray(path.read_bytes())
    # Declare 100 bytes in the central directory (offset 24) and the local header (offset 22) of liar.py.
    info = zipfile.ZipFile(path).getinfo("liar.py")
    data[info.header_offset + 22 : info.header_offset + 26] = (100).to_bytes(4, "little")
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    run = _ingest(path)
    _assert_good_kept(run)
    assert _errors(run)["liar.py"].startswith("cannot unpack archive member: Bad CRC-32")


def test_copy_stops_at_the_declared_size(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(ingest._FileProblem, match="more bytes than its header declares"):
        ingest._copy_limited(io.BytesIO(bytes(5000)), target, declared=100)
    assert not target.exists()


def test_tar_bomb_stops_unpacking_and_keeps_what_came_before(tmp_path):
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(_write(tmp_path / "src", "good.py", GOOD_PY), arcname="good.py")
        info = tarfile.TarInfo("bomb.py")
        info.size = 50 * 1024 * 1024
        tf.addfile(info, io.BytesIO(bytes(info.size)))
        tf.add(_write(tmp_path / "src", "after.py", UNRELATED), arcname="after.py")
    run = _ingest(path)
    _assert_good_kept(run)
    assert _names(run) == {"celsius_to_fahrenheit"}
    error = _errors(run)["bomb.py"]
    assert "over the 200:1 limit (possible decompression bomb); stopped unpacking" in error


def test_corrupt_archives_are_reported(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip file")
    run = _ingest(broken)
    assert run.status == IngestRun.Status.SUCCEEDED and run.kept_count == 0
    assert _errors(run)["broken.zip"].startswith("corrupt or unreadable archive:")

    truncated = tmp_path / "truncated.tar.gz"
    with tarfile.open(truncated, "w:gz") as tf:
        tf.add(_write(tmp_path / "src", "good.py", GOOD_PY), arcname="good.py")
        tf.add(_write(tmp_path / "src", "noise.txt", os.urandom(200_000).hex()), arcname="noise.txt")
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    run = _ingest(truncated)
    _assert_good_kept(run)
    assert any(error.startswith(("corrupt", "cannot unpack")) for error in _errors(run).values())


# ---------------------------------------------------------------------------------------------------------
# Options


def test_default_options_come_from_settings(settings):
    settings.INGEST_MIN_CHARS = 7
    options = default_options()
    assert options["min_chars"] == 7 and options["max_chars"] == 800
    assert (options["near_dup_threshold"], options["num_perm"], options["shingle_size"]) == (0.7, 256, 5)
    assert options["blacklist"] == BLACKLIST and options["python_must_parse"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_chars": 800, "max_chars": 50}, r"min_chars \(800\) must be less than max_chars \(50\)"),
        ({"min_chars": 0}, "min_chars must be a positive integer, got 0"),
        ({"max_chars": "800"}, "max_chars must be a positive integer, got '800'"),
        ({"num_perm": True}, "num_perm must be a positive integer"),
        ({"shingle_size": -5}, "shingle_size must be a positive integer"),
        ({"near_dup_threshold": 0}, r"near_dup_threshold must be a number in \(0, 1\], got 0"),
        ({"near_dup_threshold": 1.5}, r"near_dup_threshold must be a number in \(0, 1\]"),
        ({"near_dup_threshold": 0.7, "num_perm": 2}, "cannot be used with num_perm 2"),
        ({"blacklist": "image"}, "blacklist must be a list of non-empty strings"),
        ({"blacklist": ["image", 3]}, "blacklist must be a list of non-empty strings"),
        ({"python_must_parse": "yes"}, "python_must_parse must be true or false"),
        ({"min_char": 10}, "unknown option"),
    ],
)
def test_invalid_options_are_refused_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        create_ingest_run(tmp_path, options=options)
    assert not CodeSource.objects.exists() and not IngestRun.objects.exists()


def test_valid_options_are_merged_with_the_defaults():
    options = validate_options({"min_chars": 10, "blacklist": ["gui"]})
    assert options == {**default_options(), "min_chars": 10, "blacklist": ["gui"]}


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown source kind 'svn'"):
        create_ingest_run(tmp_path, kind="svn")


def test_an_upload_keeps_its_name_as_location(tmp_path, curator):
    stored = tmp_path / "uploads" / "8f3a.jsonl"
    stored.parent.mkdir()
    stored.write_text(json.dumps(_csn_row(GOOD_PY)) + "\n")
    run = _ingest("my rows.jsonl", upload_path=str(stored), user=curator)
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert (run.source.location, run.source.kind, run.created_by) == ("my rows.jsonl", "jsonl", curator)
    assert run.kept_count == 1
