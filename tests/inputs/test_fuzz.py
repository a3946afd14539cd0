"""Random bad input for every page form and every API endpoint that takes input: never a 500, and a
refusal (a 4xx, or a page that re-renders its form) for values that are clearly invalid.

The targets come from the URL conf and the OpenAPI schema, so a new page or endpoint is fuzzed without
being listed here; the forms are the ones each page renders (every <form method="post"> with its fields).
What a target needs to get past its first check (an object to act on, a valid rest of the body) is in
`_world` and `_API_BASELINES`; a new endpoint without a baseline is fuzzed with random bodies only.
Nothing is queued: on_commit callbacks do not run inside a test's transaction.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation import imports
from curation.models import (
    CodeSource,
    CodeTask,
    IngestRun,
    PoolExample,
    RefinementRun,
    RejudgeJob,
)
from tests.curation.pipeline_factory import make_selection
from tests.review.factory import make_instance, make_job
from training.datasets import create_version
from training.models import DatasetVersion, EvaluationRun, TrainingRun

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("WAVECODER_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # examples are not kept between runs: each run draws afresh
    suppress_health_check=list(HealthCheck),
)

HUGE = "1" + "0" * 30
# Text that a person or a script might send: numbers out of every range, other scripts' digits,
# floats, NUL, lone surrogates, markup, paths, JSON, very long text.
NASTY_TEXT = [
    "", " ", "0", "-1", "1e30", "-1e30", HUGE, str(2**31), str(2**63), "1.5", "nan", "inf", "²", "¹²",
    "１２", "٣", "a\x00b", "\x00", "\ud800", "x\udfffy", "x" * 100_000, "<b>x</b>", "../../etc/passwd",
    "line\nbreak", "%00", "[1, 2]", '{"a": {"b": 1}}', "true", "generation", "python",
]  # fmt: skip
INJECTED = ["\x00", "\ud800", "²", "0" * 30]
# Values an integer input clearly must not take (its column, or any sensible bound, is smaller).
BAD_INTEGERS = ["1e30", HUGE, str(2**63), "²", "¹²", "a\x00b", "1.5", "[1, 2]"]
BAD_NUMBERS = ["²", "a\x00b", "[1, 2]"]  # a float input

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**31, 2**63, -1, 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e30, -1e30, 1e308, 0.5]),
    st.text(max_size=20),
    st.sampled_from(NASTY_TEXT),
)
# Every field of every API body gets each of these in turn.
API_SWEEP = [
    10**30,
    -1,
    2**31,
    1e30,
    "²",
    "a\x00b",
    "\ud800",
    "x" * 100_000,
    None,
    "",
    [1, 2],
    {"a": {"b": 1}},
]
# The values most likely to break something, drawn about half the time.
json_edges = st.sampled_from(
    [10**30, -(10**30), 2**31, 2**63, -1, 0, 1e30, 1.5, True, None, "", "²", HUGE, "a\x00b", "\ud800",
     "x" * 100_000, [1, 2], [[1]], {"a": {"b": 1}}, {"generation": "x"}, ["generation"], {}]
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _bad_for_schema(value: Any, schema: dict) -> bool:
    """A JSON value clearly wrong for a field of this (OpenAPI) type."""
    kind = schema.get("type")
    if isinstance(value, str) and re.search("[\x00\ud800-\udfff]", value):
        return kind in ("string", "integer", "number", "boolean")
    if kind == "integer":
        return isinstance(value, list | dict) or (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63
        )
    if kind in ("number", "boolean", "string"):
        return isinstance(value, list | dict)
    return False


# --- The objects pages and endpoints act on -----------------------------------------------------------------


@dataclass
class World:
    """What the fuzzed pages and endpoints find: one of each object, and a client logged in as admin."""

    client: Client
    objects: dict[str, models.Model] = field(default_factory=dict)
    folder: Path | None = None


def _world(admin_user, tmp_path: Path) -> World:
    client = Client()
    client.force_login(admin_user)
    selection = make_selection(3)
    job = make_job()
    instance = make_instance(job)
    make_instance(job, task="repair")
    task = CodeTask.objects.get(slug="generation")
    version = create_version(benchmarks=[], user=admin_user)
    DatasetVersion.objects.filter(pk=version.pk).update(status=DatasetVersion.Status.SUCCEEDED, item_count=1)
    version.refresh_from_db()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"max_position_embeddings": 2048}')
    run = TrainingRun.objects.create(
        dataset_version=version,
        base_model=str(model_dir),
        status=TrainingRun.Status.SUCCEEDED,
        final_model_path=str(model_dir),
    )
    source = CodeSource.objects.create(name="src", kind="directory", location=str(tmp_path))
    objects = {
        "selection": selection,
        "job": job,
        "instance": instance,
        "task": task,
        "version": version,
        "training_run": run,
        "evaluation": EvaluationRun.objects.create(model=str(model_dir)),
        "ingest": IngestRun.objects.create(source=source),
        "pool": PoolExample.objects.create(
            task=task, kind=PoolExample.Kind.GOOD, origin=PoolExample.Origin.SEED, instruction="i", output="o"
        ),
        "refinement": RefinementRun.objects.create(
            task=task,
            base_version=task.current_principles,
            model="m",
            stage=RefinementRun.Stage.PROPOSED,
            status=RefinementRun.Status.SUCCEEDED,
            proposed_rules=[{"id": "a", "question": "Is it?"}],
        ),
        "import": imports.import_instances(io.BytesIO(GOOD_LINE.encode()), name="good.jsonl"),
        "rejudge": RejudgeJob.objects.create(model="m"),
    }
    return World(client, objects, tmp_path)


# Which object a URL's arguments name; a URL not listed gets 1, "generation" and "x".
_URL_OBJECTS = {
    "ingest-detail": "ingest",
    "selection-detail": "selection",
    "sample-detail": "instance.sample",
    "generation-detail": "job",
    "generation-control": "job",
    "instance-detail": "instance",
    "pool-action": "pool",
    "refinement-detail": "refinement",
    "refinement-action": "refinement",
    "rejudge-detail": "rejudge",
    "rejudge-cancel": "rejudge",
    "review-resolve": "instance",
    "review-action": "instance",
    "import-detail": "import",
    "training-run-detail": "training_run",
    "training-run-cancel": "training_run",
    "training-run-resume": "training_run",
    "evaluation-detail": "evaluation",
}
_ACTIONS = {
    "generation-control": ["pause", "resume", "cancel", "retry"],
    "pool-action": ["pin", "unpin", "remove", "restore"],
    "refinement-action": ["check", "adopt", "discard"],
    "review-action": ["accept", "edit", "reject", "skip"],
}


def _lookup(world: World, path: str) -> Any:
    obj: Any = world.objects
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _page_patterns() -> list[tuple[str, URLPattern]]:
    """Every named page of the URL conf, with its route; the Django admin and the API are left out (the
    admin is Django's; the API is fuzzed from its schema)."""
    found = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route.startswith(("admin/", "api/")):
                    continue
                walk(pattern.url_patterns, route)
            elif pattern.name and not route.startswith(("admin/", "api/")):
                found.append((pattern.name, pattern))

    walk(get_resolver().url_patterns, "")
    return found


def _page_urls(world: World, name: str, pattern: URLPattern) -> list[str]:
    converters = pattern.pattern.converters
    if not converters:
        return [reverse(name)]
    values: dict[str, Any] = {}
    for arg, converter in converters.items():
        if arg in ("pk",) and name in _URL_OBJECTS:
            values[arg] = _lookup(world, _URL_OBJECTS[name]).pk
        elif arg == "slug":
            values[arg] = "generation"
        elif arg == "number":
            values[arg] = world.objects["version"].number
        elif arg == "fmt":
            values[arg] = "alpaca"
        elif arg == "version":
            values[arg] = 1
        elif arg == "action":
            values[arg] = None
        else:
            values[arg] = 1 if type(converter).__name__ == "IntConverter" else "x"
    actions = _ACTIONS.get(name, ["x"]) if "action" in values else [None]
    return [reverse(name, kwargs={**values, **({"action": a} if a else {})}) for a in actions]


# --- Forms as the pages render them -------------------------------------------------------------------------


@dataclass
class FormField:
    name: str
    kind: str  # an <input> type, "select", "select-multiple" or "textarea"
    value: str = ""
    options: list[str] = field(default_factory=list)
    checked: bool = False
    step: str = ""


@dataclass
class Form:
    action: str
    multipart: bool
    fields: list[FormField] = field(default_factory=list)

    def baseline(self) -> dict[str, list[str]]:
        """What a browser would send unchanged: every value shown, checked boxes, selected options."""
        data: dict[str, list[str]] = {}
        for f in self.fields:
            if f.kind in ("checkbox", "radio"):
                if f.checked:
                    data.setdefault(f.name, []).append(f.value or "on")
            elif f.kind in ("select", "select-multiple"):
                chosen = [f.value] if f.value else f.options[:1]
                data.setdefault(f.name, []).extend(chosen)
            elif f.kind not in ("file", "submit", "button", "reset"):
                data.setdefault(f.name, []).append(f.value)
        return data


class _FormParser(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_url, self.forms, self._form, self._select, self._textarea = page_url, [], None, None, None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            action = a.get("action") or self.page_url
            self._form = Form(action, a.get("enctype", "") == "multipart/form-data")
            self.forms.append(self._form)
        if self._form is None or not a.get("name") and tag != "option":
            return
        if tag == "input" or tag == "button":
            kind = a.get("type", "text" if tag == "input" else "submit").lower()
            self._form.fields.append(
                FormField(a["name"], kind, a.get("value", ""), checked="checked" in a, step=a.get("step", ""))
            )
        elif tag == "select":
            self._select = FormField(a["name"], "select-multiple" if "multiple" in a else "select")
            self._form.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._select.options.append(a.get("value", ""))
            if "selected" in a:
                self._select.value = a.get("value", "")
        elif tag == "textarea":
            self._textarea = FormField(a["name"], "textarea")
            self._form.fields.append(self._textarea)

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


_SESSION_URLS = ("/accounts/logout/",)  # posting them would end the fuzzing client's session


def _forms(client: Client, url: str) -> list[Form]:
    response = client.get(url)
    assert response.status_code < 500
    if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
        return []
    parser = _FormParser(url)
    parser.feed(response.content.decode())
    return [
        form
        for form in parser.forms
        if urlsplit(form.action).path not in _SESSION_URLS and not urlsplit(form.action).netloc
    ]


def _file(content: bytes, name: str = "data.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


# One line that every upload takes: an instruction record, a CodeSearchNet row and a benchmark problem.
GOOD_LINE = json.dumps(
    {
        "instruction": "Write a Python function that adds two numbers.",
        "output": "def add(a, b):\n    return a + b",
        "code": "def add(a, b):\n    '''Add.'''\n    return a + b\n",
        "language": "python",
        "prompt": "Add two numbers.",
        "solution": "def add(a, b):\n    return a + b",
    }
)

file_contents = st.one_of(
    st.just(GOOD_LINE.encode() + b"\n"),
    st.lists(json_values, max_size=4).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    st.lists(
        st.dictionaries(st.sampled_from(["instruction", "output", "input", "code", "language", "prompt",
                                         "solution", "conversations", "task", "lang", "start_line"]),
                        json_values, max_size=6),
        max_size=3,
    ).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    st.binary(max_size=200),
    st.just(b""),
    st.just(b"[" + GOOD_LINE.encode() + b", 1, {\"instruction\": \"\\ud800\"}]"),
)  # fmt: skip
file_names = st.sampled_from(
    ["data.jsonl", "data.json", "data.zip", "data.parquet", "², x.jsonl", "a b.jsonl"]
)


def _encode(data: dict[str, list[str]]) -> str:
    """application/x-www-form-urlencoded as a browser sends it; a lone surrogate goes out as the bytes
    Python's surrogatepass makes (invalid UTF-8, which Django decodes with replacement characters)."""

    def q(text: str) -> str:
        return quote_plus(text.encode("utf-8", "surrogatepass"))

    return "&".join(f"{q(k)}={q(v)}" for k, values in data.items() for v in values)


def _replace_surrogates(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


# --- Nothing stored that a database refuses -----------------------------------------------------------------

_BAD_STORED = re.compile("[\x00\ud800-\udfff]")


def _strings(value: Any) -> list[str]:
    """Every string in a column's value, keys of JSON objects included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in (k, *_strings(v))]
    if isinstance(value, list | tuple):
        return [text for v in value for text in _strings(v)]
    return []


_TEXT_COLUMNS: list[tuple[type[models.Model], list[str]]] = []


def _assert_nothing_unstorable() -> None:
    """No text or JSON column holds a NUL or a lone surrogate: PostgreSQL refuses both (SQLite, which the
    tests use by default, takes NUL), so a value that reached a row would be a 500 there."""
    if not _TEXT_COLUMNS:
        for model in apps.get_models():
            kinds = models.CharField | models.TextField | models.JSONField
            names = [f.attname for f in model._meta.concrete_fields if isinstance(f, kinds)]
            if names and not model._meta.proxy:
                _TEXT_COLUMNS.append((model, names))
    for model, names in _TEXT_COLUMNS:
        for row in model.objects.values_list("pk", *names):
            for name, value in zip(names, row[1:], strict=True):
                for text in _strings(value):
                    assert not _BAD_STORED.search(text), (
                        f"{model.__name__}.{name} of #{row[0]}: {text[:200]!r}"
                    )


# --- Pages --------------------------------------------------------------------------------------------------


# Every field gets each of these in turn (the rest of its form as the page shows it); the hypothesis
# examples then draw from NASTY_TEXT and mix fields.
SWEEP_TEXT = ["", "-1", "1e30", HUGE, "²", "a\x00b", "\ud800", "x" * 100_000, "[1, 2]"]
SWEEP_QUERY_IDS = ["²", HUGE, "-1", "x"]
QUERY_IDS = ["source", "job", "instance", "after", "page", "run"]
QUERY_TEXTS = ["task", "status", "verdict", "stage", "language", "q", "rule", "kind", "origin", "removed",
               "reason", "preset", "disagreement"]  # fmt: skip


def _inputs(form: Form) -> list[FormField]:
    """The fields a person fills in, one per name (a group of checkboxes is one field)."""
    seen: dict[str, FormField] = {}
    for f in form.fields:
        if f.kind not in ("submit", "button", "reset", "file") and f.name != "csrfmiddlewaretoken":
            seen.setdefault(f.name, f)
    return list(seen.values())


def _post_form(world: World, form: Form, body: dict[str, list[str]], *, query: str = "", upload=None):
    """Post a form as a browser would; no 500, nothing stored that PostgreSQL refuses."""
    url = form.action + (("&" if "?" in form.action else "?") + query if query else "")
    if form.multipart:
        files = {f.name: upload or _file(GOOD_LINE.encode()) for f in form.fields if f.kind == "file"}
        clean = {k: [_replace_surrogates(v) for v in vs] for k, vs in body.items()}
        response = world.client.post(url, {**clean, **files})
    else:
        response = world.client.post(url, _encode(body), content_type="application/x-www-form-urlencoded")
    assert response.status_code < 500, (url, body, response.content[:500])
    _assert_nothing_unstorable()
    return response


def _assert_refused(field: FormField, value: str, response) -> None:
    """A number input given what no number column takes must not be saved (a page redirects on success)."""
    if field.kind == "number" and value in (BAD_NUMBERS if field.step == "any" else BAD_INTEGERS):
        assert response.status_code != 302, f"{field.name}={value[:50]!r} was taken"


@pytest.mark.parametrize(("name", "pattern"), _page_patterns(), ids=[n for n, _ in _page_patterns()])
def test_page_forms_refuse_bad_input_without_a_500(admin_user, tmp_path, name: str, pattern: URLPattern):
    world = _world(admin_user, tmp_path)
    urls = _page_urls(world, name, pattern)
    forms = [form for url in urls for form in _forms(world.client, url)]
    # Pages without a form of their own are still posted to (with made-up fields): POST-only views
    # (actions) take their input that way.
    targets = forms or [
        Form(url, False, [FormField("next", "text"), FormField("rules", "textarea")]) for url in urls
    ]
    for form in targets:
        for f in _inputs(form):
            for value in SWEEP_TEXT:
                _assert_refused(f, value, _post_form(world, form, {**form.baseline(), f.name: [value]}))
            old = (form.baseline().get(f.name) or [""])[0]
            for bad in ("\x00", "\ud800"):  # inside a valid value, so that it gets past parsing
                middle = len(old) // 2
                _post_form(world, form, {**form.baseline(), f.name: [old[:middle] + bad + old[middle:]]})

    @FUZZ
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        form = data.draw(st.sampled_from(targets), label="form")
        body = form.baseline()
        fields = _inputs(form)
        mode = data.draw(st.sampled_from(["one", "inject", "all", "unchanged"]), label="mode")
        changed, values = None, [""]
        if mode == "inject" and fields:
            name = data.draw(st.sampled_from(fields), label="field").name
            old = (body.get(name) or [""])[0]
            at = data.draw(st.integers(0, len(old)), label="at")
            body[name] = [old[:at] + data.draw(st.sampled_from(INJECTED), label="injected") + old[at:]]
        elif mode == "one" and fields:
            changed = data.draw(st.sampled_from(fields), label="field")
            values = data.draw(
                st.lists(
                    st.sampled_from(NASTY_TEXT) | st.text(max_size=30),
                    min_size=1,
                    max_size=2 if changed.kind in ("select-multiple", "checkbox") else 1,
                ),
                label="values",
            )
            body[changed.name] = values
        elif mode == "all":
            for f in fields:
                body[f.name] = [data.draw(st.sampled_from(NASTY_TEXT) | st.text(max_size=30), label=f.name)]
        query = data.draw(st.sampled_from(["", "job=²", f"task=x&job={HUGE}", "q=%00"]), label="query")
        upload = _file(data.draw(file_contents, label="file"), data.draw(file_names, label="file name"))
        response = _post_form(world, form, body, query=query, upload=upload)
        if changed is not None:
            _assert_refused(changed, values[0], response)

    fuzz()


def _get(world: World, url: str, query: dict[str, str]):
    response = world.client.get(url + "?" + _encode({k: [v] for k, v in query.items()}))
    assert response.status_code < 500, (url, query)
    if response.status_code == 400 and not url.startswith("/api/"):
        assert response["Content-Type"].startswith("text/plain"), "a page's 400 is a plain message"
    return response


@pytest.mark.parametrize(("name", "pattern"), _page_patterns(), ids=[n for n, _ in _page_patterns()])
def test_page_query_parameters_never_give_a_500(admin_user, tmp_path, name: str, pattern: URLPattern):
    world = _world(admin_user, tmp_path)
    urls = [url for url in _page_urls(world, name, pattern) if world.client.get(url).status_code != 405]
    if not urls:
        pytest.skip("POST only: its query string is fuzzed with its forms")
    for url in urls:
        for key in QUERY_IDS:
            for value in SWEEP_QUERY_IDS:
                _get(world, url, {key: value})
        for key in QUERY_TEXTS:
            _get(world, url, {key: "a\x00b"})

    @FUZZ
    @given(
        url=st.sampled_from(urls),
        query=st.dictionaries(st.sampled_from(QUERY_IDS + QUERY_TEXTS), st.sampled_from(NASTY_TEXT)),
    )
    def fuzz(url: str, query: dict[str, str]) -> None:
        _get(world, url, query)

    fuzz()


# --- API ----------------------------------------------------------------------------------------------------


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


_SCHEMA: dict | None = None


def _schema_cache() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = _schema()
    return _SCHEMA


def _resolve(schema: dict, node: dict) -> dict:
    """The schema a node stands for: its $ref followed, the first of an allOf (a field of an enum type)."""
    while "$ref" in node or "allOf" in node:
        if "allOf" in node:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            node = {**schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]],
                    **{k: v for k, v in node.items() if k != "$ref"}}  # fmt: skip
    return node


def _operations() -> list[tuple[str, str, dict]]:
    schema = _schema_cache()
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("post", "put", "patch", "get"):
                body = operation.get("requestBody", {}).get("content", {})
                media = body.get("application/json") or body.get("multipart/form-data") or {}
                fields = _resolve(schema, media.get("schema", {})) if media else {}
                if fields.get("type") == "array":
                    fields = {"array_of": _resolve(schema, fields.get("items", {}))}
                found.append((path, method, fields))
    return found


# A valid rest of the body, so that one bad field reaches the code behind the serializer.
def _api_baselines(world: World) -> dict[str, Any]:
    o = world.objects
    return {
        "/api/ingest-runs/": {"path": str(world.folder)},
        "/api/selection-runs/": {"k": 1},
        "/api/generation-jobs/": {
            "selection_run": o["selection"].pk, "tasks": ["generation"], "samples_per_task": 1,
        },
        "/api/tasks/{slug}/prompt-versions/": {"definition": "Do it.", "requirements": "Well."},
        "/api/tasks/{slug}/principle-versions/": {"rules": [{"id": "a", "question": "Is it?"}]},
        "/api/refinement-runs/": {"task": "generation"},
        "/api/refinement-runs/{id}/edit/": [{"id": "a", "question": "Is it?"}],
        "/api/rejudge-jobs/": {},
        "/api/dataset-versions/": {"benchmarks": []},
        "/api/training-runs/": {
            "dataset_version": o["version"].number, "base_model": str(world.folder / "model"),
        },
        "/api/evaluation-runs/": {"model": str(world.folder / "model")},
        "/api/benchmarks/": {"name": "bench"},
    }  # fmt: skip


_PATH_OBJECTS = {
    "ingest-runs": "ingest", "selection-runs": "selection", "generation-jobs": "job", "instances": "instance",
    "samples": "instance.sample", "pool-examples": "pool", "refinement-runs": "refinement",
    "rejudge-jobs": "rejudge", "training-runs": "training_run", "evaluation-runs": "evaluation",
    "benchmarks": None, "dataset-versions": "version", "tasks": "task",
}  # fmt: skip


def _api_path(world: World, template: str) -> str:
    resource = template.split("/")[2]
    obj = _lookup(world, _PATH_OBJECTS[resource]) if _PATH_OBJECTS.get(resource) else None
    values = {
        "id": obj.pk if obj is not None else 1,
        "slug": "generation",
        "number": world.objects["version"].number,
        "version": 1,
        "fmt": "alpaca",
    }
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), 1)), template)


_OPERATIONS = _operations()


@pytest.mark.parametrize(
    ("template", "method", "fields"),
    [op for op in _OPERATIONS if op[0] != "/api/schema/"],
    ids=[f"{m.upper()} {p}" for p, m, _ in _OPERATIONS if p != "/api/schema/"],
)
def test_api_refuses_bad_input_without_a_500(admin_user, tmp_path, template: str, method: str, fields: dict):
    world = _world(admin_user, tmp_path)
    path = _api_path(world, template)
    baseline = _api_baselines(world).get(template, {})
    properties: dict[str, dict] = dict(fields.get("properties", {}))
    item = fields.get("array_of")
    keys = list(properties) or ["detail", "name"]
    queries = QUERY_IDS + ["task", "status", "passed", "language", "kind", "origin", "removed", "reason"]

    def send(body: Any, query: dict[str, str] | None = None, bad_field: str | None = None) -> None:
        url = path + ("?" + _encode({k: [v] for k, v in query.items()}) if query else "")
        content = json.dumps(body)  # NaN and Infinity too: the parser must refuse them
        response = world.client.generic(method.upper(), url, content, content_type="application/json")
        assert response.status_code < 500, (
            body if len(content) < 500 else content[:500],
            response.content[:500],
        )
        if bad_field is not None:
            assert 400 <= response.status_code < 500, f"{bad_field}={str(body[bad_field])[:50]} was taken"
        _assert_nothing_unstorable()

    def bad_for(name: str, value: Any) -> str | None:
        spec = _resolve(_schema_cache(), properties.get(name, {}))
        return name if not spec.get("readOnly") and _bad_for_schema(value, spec) else None

    if method == "get":
        for key in QUERY_IDS:
            for value in SWEEP_QUERY_IDS:
                _get(world, path, {key: value})
        for key in queries:
            _get(world, path, {key: "a\x00b"})
    elif item is None:  # every field gets each edge value, the rest of the body valid
        for name in keys:
            for value in API_SWEEP:
                send({**baseline, name: value}, bad_field=bad_for(name, value))

    @FUZZ
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        query = data.draw(st.dictionaries(st.sampled_from(queries), st.sampled_from(NASTY_TEXT), max_size=2))
        if method == "get":
            _get(world, path, query)
            return
        bad_field = None
        if item is not None:  # a list body: a list of objects, one of them changed
            entry = dict(baseline[0]) if baseline else {}
            name = data.draw(st.sampled_from(list(item.get("properties", {})) or ["id"]))
            entry[name] = data.draw(json_edges | json_values)
            body: Any = data.draw(st.sampled_from([[entry], entry, [entry, entry], entry[name]]))
        elif data.draw(st.integers(0, 3), label="whole body random") == 0:
            body = data.draw(json_values)
        else:
            body = dict(baseline)
            name = data.draw(st.sampled_from(keys), label="field")
            body[name] = data.draw(json_edges | json_values, label="value")
            bad_field = bad_for(name, body[name])
        if fields.get("type") == "object" and "upload" in properties and data.draw(st.booleans()):
            flat = body if isinstance(body, dict) else {}
            form = {
                k: _replace_surrogates(v if isinstance(v, str) else json.dumps(v)) for k, v in flat.items()
            }
            form["upload"] = _file(data.draw(file_contents), data.draw(file_names))
            url = path + ("?" + _encode({k: [v] for k, v in query.items()}) if query else "")
            response = world.client.post(url, form)
            assert response.status_code < 500, response.content[:500]
            _assert_nothing_unstorable()
        else:
            send(body, query, bad_field)

    fuzz()
