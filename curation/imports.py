"""Import instruction data written elsewhere as instances to judge and review.

Reads Alpaca-style records (`instruction` / `input` / `output`: CodeAlpaca, Evol-Instruct; Magicoder's
`problem` / `solution` and `instruction` / `response`) and ShareGPT-style conversations (`conversations`
of from/value turns, or `messages` of role/content turns), from a JSON array or JSON Lines. Each imported
instance records its source (file and line). Its task is the one the caller sets, else the record's own
`task`, else inferred from the instruction; its language likewise (`lang`/`language`, a fenced block's
tag, or a language the instruction names).

A file with errors imports nothing unless the caller asks for the valid records only, and every error
names its line: invalid UTF-8 or JSON, a record that is not an object, a missing, empty or wrongly typed
field, text no database can store (a NUL character, a lone surrogate escape such as `\\ud800`), a
conversation without an answer. A file over the size limit is refused before it is read.

An import is a `GenerationJob` of kind `import`. With `judge`, its instances wait for the discriminator on
the `llm` queue like generated ones (they skip the generator and its checks); without, they go straight
to review.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import CodeTask, GenerationJob, Instance

INSTRUCTION_FIELDS = ("instruction", "problem", "prompt", "question", "query")
INPUT_FIELDS = ("input", "context")
OUTPUT_FIELDS = ("output", "response", "solution", "completion", "answer")
LANGUAGE_FIELDS = ("lang", "language")
USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "bot", "model", "chatgpt"})
# Uploads larger than this are refused before they are read (the command takes --max-mb).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_LISTED_ERRORS = 100
_CHUNK = 1000

# Names a record or an instruction may give a language by, and the alias instances use.
LANGUAGE_ALIASES = {
    "python": "python", "python3": "python", "py": "python",
    "javascript": "javascript", "js": "javascript", "node.js": "javascript", "nodejs": "javascript",
    "typescript": "typescript", "ts": "typescript",
    "java": "java", "kotlin": "kotlin", "scala": "scala", "swift": "swift",
    "c++": "cpp", "cpp": "cpp", "c#": "csharp", "csharp": "csharp", "c": "c",
    "go": "go", "golang": "go", "rust": "rust", "ruby": "ruby", "php": "php", "perl": "perl",
    "haskell": "haskell", "lua": "lua", "dart": "dart", "julia": "julia", "r": "r",
    "sql": "sql", "bash": "bash", "shell": "bash", "sh": "bash", "powershell": "powershell",
}  # fmt: skip
# Named in prose: case-insensitive, except the ones that are also ordinary words or letters.
_LANGUAGE_IN_TEXT = re.compile(
    r"(?i:\b(python3?|javascript|node\.js|typescript|java|kotlin|scala|swift|c\+\+|c#|golang|rust|ruby|php|"
    r"perl|haskell|lua|dart|julia|sql|bash|powershell)(?![\w+#]))|\b(Go|C|JS|TS)\b(?![\w+#])"
)
_FENCE_TAG = re.compile(r"```[ \t]*([\w+#.-]+)")
# "Translate / convert / port / rewrite … to|into|in <language>": the verb is case-insensitive, the
# language follows _LANGUAGE_IN_TEXT's own rules (so "convert … to go" is not Go).
_TRANSLATION = re.compile(
    r"(?i:\b(?:translat|convert|port\b|rewrit|re-?implement|transpil)\w*[^.?!\n]*?\b(?:to|into|in)\s+"
    r"(?:(?:idiomatic|equivalent|modern)\s+)?)" + _LANGUAGE_IN_TEXT.pattern
)
_REPAIR = re.compile(
    r"\b(fix\w*|bugs?|buggy|debug\w*|repair\w*|correct (?:the|this) (?:code|function|error))\b", re.I
)
_SUMMARY = re.compile(
    r"\b(explain\w*|summari[sz]\w*|describe\w*|document\w*|docstring|what does|what is the purpose|"
    r"comment on)\b",
    re.I,
)
# A NUL (PostgreSQL refuses it in text) or a lone surrogate (a "\ud800" escape without its pair: no
# character, so no UTF-8 encoder or database takes it; json.loads joins a valid pair into one character).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|return\b|#include|public |function\b|}|.*[;{]\s*$)"
)


class ImportFileError(ValueError):
    """A file that cannot be imported; `errors` holds one message per problem, by line number."""

    def __init__(self, name: str, errors: list[str], total: int | None = None) -> None:
        self.errors, self.total = errors, len(errors) if total is None else total
        listed = "\n".join(f"  {e}" for e in errors)
        more = f"\n  … and {self.total - len(errors)} more" if self.total > len(errors) else ""
        noun = "problem" if self.total == 1 else "problems"
        super().__init__(f"{name}: {self.total} {noun}:\n{listed}{more}")


class _Bad(Exception):
    """One record cannot be imported; the message goes to the error list with its line."""


@dataclass(frozen=True)
class ImportRecord:
    line: int
    instruction: str
    input: str
    output: str
    task: str
    task_from: str  # "set", "record" or "inferred"
    language: str
    target_language: str = ""


@dataclass
class ParsedFile:
    """What reading a file found: the valid records, and the errors (the first MAX_LISTED_ERRORS)."""

    name: str
    format: str = "jsonl"
    records: list[ImportRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    read: int = 0  # records seen, valid or not
    duplicates: int = 0  # exact repeats of an earlier record, skipped
    notes: Counter = field(default_factory=Counter)

    def error(self, line: int | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(f"line {line}: {message}" if line else message)


# --- Inference -----------------------------------------------------------------------------------------


def normalize_language(name: str) -> str:
    """The alias instances use for a language name ("Python 3" → python, "C++" → cpp); "" if unknown."""
    key = name.strip().lower().split(" ")[0] if name.strip() else ""
    return LANGUAGE_ALIASES.get(key, LANGUAGE_ALIASES.get(name.strip().lower(), ""))


def _named_languages(text: str) -> list[str]:
    return [normalize_language(a or b) for a, b in _LANGUAGE_IN_TEXT.findall(text)]


def infer_language(instruction: str, input_: str, output: str, *, task: str = "") -> str:
    """The language of an instance: a fenced block's tag, else the first language the instruction names.
    For a translation it is the source language: the input's, or one named besides the target."""
    if task == CodeTask.Slug.TRANSLATION:
        target = target_language(instruction)
        fenced = [normalize_language(tag) for tag in _FENCE_TAG.findall(input_)]
        named = [lang for lang in _named_languages(instruction) if lang != target]
        return next((lang for lang in (*fenced, *named) if lang), "")
    for text in (output, input_):
        for tag in _FENCE_TAG.findall(text):
            if language := normalize_language(tag):
                return language
    named = _named_languages(instruction)
    return named[0] if named else ""


def target_language(instruction: str) -> str:
    """The language an instruction asks to translate into ("Convert this Java code to Python" → python)."""
    match = _TRANSLATION.search(instruction)
    return normalize_language(match.group(1) or match.group(2)) if match else ""


def _looks_like_code(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if "```" in text:
        return True
    return bool(lines) and sum(bool(_CODE_LINE.match(line)) for line in lines) / len(lines) >= 0.3


def infer_task(instruction: str, input_: str, output: str) -> str:
    """WaveCoder's task an instance is closest to, from its instruction: translation when it asks to
    translate or convert code into a named language (and names a second language or gives code as the
    input: "convert Celsius to Fahrenheit in Python" is generation), repair when it speaks of fixing or
    bugs, summarization when it asks to explain or document and the answer is prose; else generation."""
    target = target_language(instruction)
    if target and (any(lang != target for lang in _named_languages(instruction)) or _looks_like_code(input_)):
        return CodeTask.Slug.TRANSLATION
    if _REPAIR.search(instruction):
        return CodeTask.Slug.REPAIR
    if _SUMMARY.search(instruction) and not _looks_like_code(output):
        return CodeTask.Slug.SUMMARIZATION
    return CodeTask.Slug.GENERATION


# --- Records ---------------------------------------------------------------------------------------------


def _string(record: dict, names: tuple[str, ...], *, required: bool) -> str:
    """The first of `names` present in the record; it must be a string (non-empty when required)."""
    name = next((n for n in names if n in record), None)
    if name is None:
        if required:
            alternatives = f" (or one of {', '.join(names[1:])})" if len(names) > 1 else ""
            raise _Bad(f"missing field {names[0]!r}{alternatives}")
        return ""
    value = record[name]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"field {name!r} must be a string, got {_type_name(value)}")
    if required and not value.strip():
        raise _Bad(f"field {name!r} is empty")
    return _text(value, f"field {name!r}")


def _text(value: str, where: str) -> str:
    """`value` with plain newlines; _Bad when it holds what no database can store (see _NOT_TEXT)."""
    if match := _NOT_TEXT.search(value):
        char = match.group()
        what = "a NUL character" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
        raise _Bad(f"{where} contains {what} at character {match.start() + 1}")
    return value.replace("\r\n", "\n")


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _conversation(turns: Any, name: str, parsed: ParsedFile) -> tuple[str, str]:
    """(instruction, output) of the first user turn and the assistant turn that answers it."""
    if not isinstance(turns, list) or not turns:
        raise _Bad(f"field {name!r} must be a non-empty array of turns, got {_type_name(turns)}")
    texts: list[tuple[str, str]] = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise _Bad(f"turn {number} of {name!r} must be an object, got {_type_name(turn)}")
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if not isinstance(role, str) or not isinstance(text, str):
            raise _Bad(f"turn {number} of {name!r} needs string fields from/value (or role/content)")
        texts.append((role.lower(), text))
    user = next((i for i, (role, _) in enumerate(texts) if role in USER_ROLES), None)
    if user is None:
        raise _Bad(f"{name!r} has no user turn")
    answer = next((i for i in range(user + 1, len(texts)) if texts[i][0] in ASSISTANT_ROLES), None)
    if answer is None:
        raise _Bad(f"{name!r} has no assistant turn after the first user turn")
    instruction, output = texts[user][1], texts[answer][1]
    if not instruction.strip() or not output.strip():
        raise _Bad(f"the first exchange of {name!r} is empty")
    if any(role in USER_ROLES for role, _ in texts[answer + 1 :]):
        parsed.notes["multi-turn conversations: only the first exchange imported"] += 1
    return _text(instruction, f"turn {user + 1} of {name!r}"), _text(output, f"turn {answer + 1} of {name!r}")


def _record(value: Any, line: int, parsed: ParsedFile, task: str | None, language: str) -> ImportRecord:
    if not isinstance(value, dict):
        raise _Bad(f"expected a JSON object, got {_type_name(value)}")
    conversation = next((n for n in ("conversations", "messages") if n in value), None)
    if conversation:
        instruction, output = _conversation(value[conversation], conversation, parsed)
        input_ = ""
    else:
        instruction = _string(value, INSTRUCTION_FIELDS, required=True)
        input_ = _string(value, INPUT_FIELDS, required=False)
        output = _string(value, OUTPUT_FIELDS, required=True)
    if task:
        chosen, task_from = task, "set"
    elif "task" in value:
        chosen = value["task"]
        if chosen not in CodeTask.Slug.values:
            raise _Bad(f"unknown task {chosen!r} (one of {', '.join(CodeTask.Slug.values)})")
        task_from = "record"
    else:
        chosen, task_from = infer_task(instruction, input_, output), "inferred"
    own = _string(value, LANGUAGE_FIELDS, required=False)
    lang = language or normalize_language(own) or infer_language(instruction, input_, output, task=chosen)
    target = target_language(instruction) if chosen == CodeTask.Slug.TRANSLATION else ""
    return ImportRecord(line, instruction, input_, output, chosen, task_from, lang, target)


# --- Reading a file --------------------------------------------------------------------------------------


def _size(source: str | Path | IO[bytes]) -> int | None:
    if isinstance(source, str | Path):
        return os.path.getsize(source)
    size = getattr(source, "size", None)  # an upload knows its size
    if size is None and source.seekable():
        position = source.tell()
        size = source.seek(0, io.SEEK_END)
        source.seek(position)
    return size


def _json_lines(handle: IO[bytes], parsed: ParsedFile) -> Iterator[tuple[int, Any]]:
    for line, raw in enumerate(iter(lambda: handle.readline(MAX_RECORD_BYTES + 1), b""), start=1):
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            parsed.error(line, f"longer than {MAX_RECORD_BYTES:,} bytes; skipped")
            continue
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            parsed.error(line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            continue
        if not text.strip():
            continue
        parsed.read += 1
        try:
            yield line, json.loads(text.rstrip("\r\n"))  # so an error's column is on this line
        except json.JSONDecodeError as exc:
            parsed.error(line, f"invalid JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            parsed.error(line, "invalid JSON: nested too deeply")


def _json_array(data: bytes, parsed: ParsedFile) -> Iterator[tuple[int, Any]]:
    """The elements of a JSON array with the line each starts on. A broken element ends the reading: past
    it, where the next element starts cannot be known."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        parsed.error(line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); nothing read")
        return
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    space = re.compile(r"\s*")
    expect_value = True
    line, counted = 1, 0  # the line `position` is on, counted incrementally (not from the start each time)
    while True:
        position = space.match(text, position).end()
        line, counted = line + text.count("\n", counted, position), position
        if position >= len(text):
            parsed.error(line, "invalid JSON: the array is not closed with ]")
            return
        if text[position] == "]" and (expect_value is False or parsed.read == 0):
            if space.match(text, position + 1).end() != len(text):
                parsed.error(line, "invalid JSON: text after the closing ]")
            return
        if not expect_value:
            if text[position] != ",":
                parsed.error(line, "invalid JSON: expected , or ] between records; the rest was not read")
                return
            position, expect_value = position + 1, True
            continue
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            parsed.error(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno}); the rest was not read")
            return
        except RecursionError:
            parsed.error(line, "invalid JSON: nested too deeply; the rest was not read")
            return
        parsed.read += 1
        yield line, value
        position, expect_value = end, False


def read_file(
    source: str | Path | IO[bytes],
    *,
    name: str | None = None,
    task: str | None = None,
    language: str = "",
    max_bytes: int | None = None,
) -> ParsedFile:
    """Read every record of an instruction file: the valid ones, exact repeats skipped, and an error per
    bad record. ImportFileError when the file cannot be read at all (too large). `source` is a path or a
    binary file (an upload); `task` (a slug) and `language` override what records say or imply."""
    name = name or (
        os.path.basename(source) if isinstance(source, str | Path) else getattr(source, "name", "upload")
    )
    parsed = ParsedFile(_clean_name(Path(str(name)).name))
    if task and task not in CodeTask.Slug.values:
        raise ValueError(f"Unknown task {task!r}; one of {', '.join(CodeTask.Slug.values)}.")
    limit = max_bytes if max_bytes is not None else getattr(settings, "IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES)
    size = _size(source)
    if size is not None and limit and size > limit:
        raise ImportFileError(
            parsed.name,
            [
                f"the file is {size / 2**20:,.1f} MB, over the {limit / 2**20:,.0f} MB limit; nothing was "
                "read (split it, or import it with `manage.py import_instances FILE --max-mb N`)"
            ],
        )
    language = normalize_language(language) if language else ""
    handle = open(source, "rb") if isinstance(source, str | Path) else source
    try:
        head = handle.read(4096)
        handle.seek(0)
        first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if first == b"[":
            parsed.format = "json"
            values = _json_array(handle.read(), parsed)
        else:
            values = _json_lines(handle, parsed)
        seen: set[bytes] = set()
        for line, value in values:
            try:
                record = _record(value, line, parsed, task, language)
            except _Bad as exc:
                parsed.error(line, str(exc))
                continue
            key = hashlib.sha1(
                "\x1f".join((record.instruction, record.input, record.output)).encode(), usedforsecurity=False
            ).digest()
            if key in seen:
                parsed.duplicates += 1
                continue
            seen.add(key)
            parsed.records.append(record)
    finally:
        if isinstance(source, str | Path):
            handle.close()
    return parsed


def _clean_name(name: str) -> str:
    """A file name the report and each instance's source can hold: without NUL or lone surrogates."""
    return name.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


# --- Importing -------------------------------------------------------------------------------------------


def import_instances(
    source: str | Path | IO[bytes],
    *,
    name: str | None = None,
    task: str | None = None,
    language: str = "",
    judge: bool = False,
    valid_only: bool = False,
    discriminator_model: str | None = None,
    concurrency: int = 8,
    max_bytes: int | None = None,
    user=None,
) -> GenerationJob:
    """Read a file and create an import job with its instances. ImportFileError (listing the bad lines)
    when the file has errors and `valid_only` is off, or when nothing in it can be imported; then
    nothing is created. With `judge` the instances wait for the discriminator (queue the job with
    `start_import`, or run `generation.run_generation`); without, they are ready for review."""
    parsed = read_file(source, name=name, task=task, language=language, max_bytes=max_bytes)
    if parsed.error_count and not valid_only:
        raise ImportFileError(parsed.name, parsed.errors, parsed.error_count)
    if not parsed.records:
        errors = parsed.errors or ["the file holds no instruction records"]
        raise ImportFileError(parsed.name, errors, max(parsed.error_count, 1))
    tasks = {t.slug: t for t in CodeTask.objects.select_related("current_prompt")}
    now = timezone.now()
    report = {
        "file": parsed.name,
        "format": parsed.format,
        "records": parsed.read,
        "imported": len(parsed.records),
        "duplicates": parsed.duplicates,
        "error_count": parsed.error_count,
        "errors": parsed.errors,
        "tasks": dict(Counter(r.task for r in parsed.records).most_common()),
        "task_from": dict(Counter(r.task_from for r in parsed.records).most_common()),
        "languages": dict(Counter(r.language or "unknown" for r in parsed.records).most_common()),
        "notes": dict(parsed.notes),
        "judge": judge,
    }
    with transaction.atomic():
        job = GenerationJob.objects.create(
            kind=GenerationJob.Kind.IMPORT,
            tasks=sorted(report["tasks"]),
            samples_per_task=0,
            generator_model="",
            discriminator_model=discriminator_model or settings.LLM_DISCRIMINATOR_MODEL,
            concurrency=concurrency,
            execute=False,
            created_by=user,
            report=report,
            progress_total=len(parsed.records),
            **(
                {"status": GenerationJob.Status.QUEUED}
                if judge
                else {
                    "status": GenerationJob.Status.SUCCEEDED,
                    "progress_done": len(parsed.records),
                    "phase": "imported",
                    "started_at": now,
                    "finished_at": now,
                }
            ),
        )
        status = Instance.Status.PENDING if judge else Instance.Status.DONE
        for start in range(0, len(parsed.records), _CHUNK):
            Instance.objects.bulk_create(
                Instance(
                    job=job,
                    source=f"{parsed.name}:{record.line}"[:500],
                    task=tasks[record.task],
                    prompt_version=tasks[record.task].current_prompt,
                    generator_model="",
                    status=status,
                    language=record.language,
                    target_language=record.target_language,
                    instruction=record.instruction,
                    input=record.input,
                    output=record.output,
                    finished_at=None if judge else now,
                )
                for record in parsed.records[start : start + _CHUNK]
            )
    return job


def start_import(source: str | Path | IO[bytes], **options: Any) -> GenerationJob:
    """Import a file; with `judge`, queue the discriminator for its instances (on the `llm` queue)."""
    from . import tasks as tasks_module

    job = import_instances(source, **options)
    if options.get("judge"):
        transaction.on_commit(lambda: tasks_module.run_generation_job.delay(job.pk))
    return job
