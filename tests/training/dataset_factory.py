"""Accepted instances (judged, then accepted by a reviewer) to build dataset versions from, and leaks of
real HumanEval solutions to plant among them."""

from __future__ import annotations

from curation import review
from curation.models import GenerationJob, Instance
from tests.review.factory import make_instance, make_job
from tests.training.test_decontamination import reformat, rename
from training.benchmarks import humaneval_items

# Ordinary code, nothing like a benchmark problem: each a different everyday task.
CLEAN = [
    ("Write a Python function that parses a key=value config line.",
     "def parse_line(line):\n    key, _, value = line.partition('=')\n    return key.strip(), value.strip()"),
    ("Write a Python function that counts the words in a text file.",
     "def count_words(path):\n    with open(path) as handle:\n"
     "        return sum(len(line.split()) for line in handle)"),
    ("Write a Python function that formats a byte count for people.",
     "def human_bytes(n):\n    for unit in ('B', 'KB', 'MB', 'GB'):\n        if n < 1024:\n"
     "            return f'{n:.1f} {unit}'\n        n /= 1024\n    return f'{n:.1f} TB'"),
    ("Write a Python function that retries a call three times.",
     "def retry(call):\n    for attempt in range(3):\n        try:\n            return call()\n"
     "        except OSError:\n            if attempt == 2:\n                raise"),
    ("Write a Python function that builds a URL query string from a dict.",
     "from urllib.parse import urlencode\n\ndef query(params):\n"
     "    return '?' + urlencode(sorted(params.items()))"),
    ("Write a Python function that chunks a list into pieces of n.",
     "def chunks(items, n):\n    return [items[i:i + n] for i in range(0, len(items), n)]"),
]  # fmt: skip


def accept(instance: Instance, reviewer) -> Instance:
    review.accept(instance, reviewer, expected_version=None)
    instance.refresh_from_db()
    return instance


def make_accepted(
    reviewer,
    *,
    job: GenerationJob | None = None,
    task: str = "generation",
    language: str = "python",
    instruction: str = "Write a Python function that adds two numbers.",
    input: str = "",  # noqa: A002 - the field's name
    output: str = "def add(a, b):\n    return a + b",
) -> Instance:
    instance = make_instance(
        job or make_job(), task=task, language=language, instruction=instruction, output=output
    )
    if input:
        Instance.objects.filter(pk=instance.pk).update(input=input)
    return accept(instance, reviewer)


def make_clean(reviewer, job: GenerationJob | None = None, **fields) -> list[Instance]:
    job = job or make_job()
    return [make_accepted(reviewer, job=job, instruction=i, output=o, **fields) for i, o in CLEAN]


def humaneval_leaks() -> dict[str, str]:
    """Three real HumanEval solutions as an LLM might hand them back: verbatim, renamed, and renamed and
    reformatted without docstrings (every name its author chose replaced, quotes swapped, re-indented)."""
    items = humaneval_items()
    return {
        "verbatim": items[0].code,
        "renamed": rename(items[12].code, seed=2),
        "renamed_reformatted": reformat(rename(items[20].code, docstrings=False, seed=5)),
    }


LEAK_ITEMS = {"verbatim": "HumanEval/0", "renamed": "HumanEval/12", "renamed_reformatted": "HumanEval/20"}


# --- What the API and page tests start from --------------------------------------------------------------


def record_builds(monkeypatch) -> list[int]:
    """Version builds queued from now on, recorded instead of sent to a broker."""
    from training import tasks

    calls: list[int] = []
    monkeypatch.setattr(tasks.build_dataset_version, "delay", calls.append)
    return calls


def make_built_version(reviewer):
    """A built version: the six clean instances, and a renamed HumanEval/12 solution it left out."""
    from training.datasets import build_version, create_version
    from training.models import DatasetVersion

    make_clean(reviewer)
    make_accepted(reviewer, instruction="Write a Python function.", output=humaneval_leaks()["renamed"])
    version = build_version(create_version(name="<b>bold</b> name", use_embeddings=False).pk)
    assert version.status == DatasetVersion.Status.SUCCEEDED, version.error
    return version
