"""Values read straight from a request (query parameters, hidden form values) and the bounds that forms
and serializers give their numbers, so that bad input is a clear 400 and never reaches the database.

`int_param` and `text_param` raise `BadParameter`: a DRF view answers it with DRF's 400 JSON naming the
parameter, any other view with a plain-text 400 (`bad_request`, the project's handler400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views import defaults
from rest_framework import serializers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

# Column ranges (PostgreSQL's; SQLite stores 64 bits and enforces nothing).
INT32_MAX = 2**31 - 1  # integer, and PositiveIntegerField
ID_MAX = 2**63 - 1  # bigint: every primary key (BigAutoField)

# Bounds that make sense for what the numbers mean (all within their columns).
SEED_MAX = INT32_MAX  # a signed 32-bit column; numpy's generators take any non-negative seed
SELECTION_K_MAX = 1_000_000  # samples picked by one KCenterGreedy run
SAMPLES_PER_TASK_MAX = 100_000
INSTANCES_PER_SAMPLE_MAX = 20
CONCURRENCY_MAX = 256  # LLM requests in flight
FEW_SHOT_MAX = 16  # good and bad pool examples per prompt: more does not fit a prompt
TRIES_MAX = 10  # generator replies per instance
DATASET_SIZE_MAX = 10_000_000  # instances in one dataset version (the export bench runs 1,000,000)
INGEST_CHARS_MAX = 10_000_000  # the length window of ingested code
TEXT_PARAM_MAX = 1000  # characters of a text query parameter (a search, a language, a slug)
REFINEMENT_HELDOUT_FRACTION = (0.05, 0.9)
REFINEMENT_CASES_MAX = 200  # disagreements shown to the LLM
REFINEMENT_HELDOUT_MAX = 1000  # instances judged twice by the held-out check

_ASCII_DIGITS = re.compile(r"[0-9]+")  # not \d, nor str.isdigit(): they take other scripts' digits


class BadParameter(ValidationError, BadRequest):
    """A request value that is not what the view takes; the message says what it takes.

    A DRF ValidationError (so an API view answers 400 with `{name: [message]}`) and a Django BadRequest
    (so a page answers 400 through handler400)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__({name: [message]}, code="invalid")
        self.name, self.message = name, message

    def __str__(self) -> str:
        return self.message


def whole_number(text: str, *, minimum: int = 1, maximum: int = ID_MAX) -> int | None:
    """`text` as a whole number from `minimum` to `maximum`, or None when it is not one.

    Only ASCII digits: `str.isdigit()` accepts superscripts that `int()` refuses, and `int()` accepts
    other scripts' digits."""
    text = text.strip()
    # Counting digits first keeps int() away from a megabyte of them.
    if _ASCII_DIGITS.fullmatch(text) and len(text) <= len(str(maximum)) and minimum <= int(text) <= maximum:
        return int(text)
    return None


def int_param(params: Mapping[str, Any], name: str, *, minimum: int = 1, maximum: int = ID_MAX) -> int | None:
    """`params[name]` as a whole number (see `whole_number`); None when absent or blank, BadParameter
    for anything else, out-of-range numbers included."""
    text = str(params.get(name) or "").strip()
    if not text:
        return None
    if (number := whole_number(text, minimum=minimum, maximum=maximum)) is not None:
        return number
    shown = text if len(text) <= 40 else text[:40] + "…"
    raise BadParameter(
        name, f"{name} must be a whole number from {minimum} to {maximum} (digits 0-9); got {shown!r}."
    )


def text_param(params: Mapping[str, Any], name: str, *, max_length: int = TEXT_PARAM_MAX) -> str:
    """`params[name]` as text ("" when absent), refused when the database cannot compare it (PostgreSQL
    refuses NUL characters in any string) or when it is longer than any value it could match."""
    text = str(params.get(name) or "")
    if "\x00" in text:
        raise BadParameter(name, f"{name} must not contain NUL characters.")
    if len(text) > max_length:
        raise BadParameter(name, f"{name} must be at most {max_length} characters long.")
    return text


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a BadParameter's message as plain text; Django's own page for any other bad request
    (their messages are not meant for the client)."""
    if isinstance(exception, BadParameter):
        return HttpResponseBadRequest(exception.message, content_type="text/plain; charset=utf-8")
    return defaults.bad_request(request, exception)


_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins a valid pair into one character


def _lone_surrogate_at(data: Any) -> str | None:
    """Where in parsed JSON a string (or key) holds a lone surrogate: "tasks[0]", "" for the top level;
    None when nowhere. Iterative: the body may nest as deep as the JSON parser allows."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return f"a key of {path}" if path else "a key"
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", item) for n, item in enumerate(value))
    return None


class TextJSONParser(JSONParser):
    """JSON whose strings are text. A lone surrogate escape (`"\\ud800"`) parses, but is no character:
    no database column, UTF-8 response or error message echoing it can hold it, so it is a 400 that says
    where it is. Nesting too deep for the parser is a 400 too, not a RecursionError."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.")
        where = _lone_surrogate_at(data)
        if where is not None:
            where = (where[:80] + "…" if len(where) > 80 else where) or "the body"
            raise ParseError(
                f"JSON parse error - {where} holds a lone surrogate (an unpaired "
                "\\ud800-\\udfff escape), which is not text."
            )
        return data


# What every API view parses: DRF's defaults, JSON through TextJSONParser.
API_PARSERS = [TextJSONParser, FormParser, MultiPartParser]


class TextSlugRelatedField(serializers.SlugRelatedField):
    """A related object by a text slug, refused before the lookup when the slug holds a NUL character
    (PostgreSQL refuses it in a query: a 500, where SQLite simply finds nothing)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            raise serializers.ValidationError("Must not contain NUL characters.")
        return super().to_internal_value(data)
