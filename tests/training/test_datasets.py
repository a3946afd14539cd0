"""Dataset versions: what they take, what decontamination and near-dedup leave out, the task mix, and
that a built version never changes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from curation import review
from curation.models import Instance, Review
from tests.review.factory import make_instance, make_job
from tests.shared_data import shared_data_dir
from tests.training.dataset_factory import (
    CLEAN,
    LEAK_ITEMS,
    accept,
    humaneval_leaks,
    make_accepted,
    make_clean,
)
from tests.training.test_decontamination import HashingEmbedder, ordinary_functions
from training import datasets
from training.benchmarks import BenchmarkFileError
from training.datasets import (
    CODEOCEAN_MIX,
    DatasetError,
    InstanceFilter,
    build_version,
    create_version,
    parse_mix,
)
from training.models import Benchmark, DatasetExclusion, DatasetVersion

pytestmark = pytest.mark.django_db


def build(embedder=None, **params) -> DatasetVersion:
    """Create and build a version; the embedding method is off unless an embedder is given."""
    params.setdefault("use_embeddings", embedder is not None)
    version = create_version(**params)
    return build_version(version.pk, embedder=embedder)


def item_texts(version: DatasetVersion) -> list[tuple[str, str, str]]:
    return list(version.items.values_list("instruction", "input", "output"))


# --- What a version takes ----------------------------------------------------------------------------------


def test_a_version_holds_accepted_instances_in_their_reviewed_form(reviewer, curator):
    job = make_job()
    plain = make_accepted(reviewer, job=job)
    edited = make_instance(job, instruction="Write a Python function that doubles a number.", output="x")
    review.edit_and_accept(
        edited, reviewer, {"output": "def double(x):\n    return 2 * x"}, expected_version=edited.version
    )
    repair = make_instance(
        job,
        task="repair",
        instruction="Fix the bug in this Python function.",
        output="def inc(x):\n    return x + 1",
    )
    Instance.objects.filter(pk=repair.pk).update(
        input="def inc(x):\n    return x - 1", explanation="It subtracted one instead of adding it."
    )
    review.resolve(repair, curator, Review.Decision.ACCEPT)  # a curator's resolution counts too
    rejected = make_instance(
        job, instruction="Write a Python function that parses JSON.", output="import json"
    )
    review.reject(rejected, reviewer, reason="Not a function.", expected_version=rejected.version)
    make_instance(
        job, instruction="Write a Python function that sorts a list.", output="sorted"
    )  # unreviewed

    version = build()

    assert version.status == DatasetVersion.Status.SUCCEEDED, version.error
    assert version.item_count == 3
    rows = {item.instance_id: item for item in version.items.all()}
    assert set(rows) == {plain.pk, edited.pk, repair.pk}
    assert (
        rows[edited.pk].output == "def double(x):\n    return 2 * x"
    )  # the reviewer's revision, not revision 0
    assert rows[repair.pk].input == "def inc(x):\n    return x - 1"
    assert (
        rows[repair.pk].output == "def inc(x):\n    return x + 1\n\nIt subtracted one instead of adding it."
    )
    assert (rows[repair.pk].task, rows[repair.pk].language) == ("repair", "python")
    assert list(version.items.values_list("position", flat=True)) == [0, 1, 2]


def test_filters_choose_by_task_language_job_reviewer_and_date(reviewer, curator, django_user_model):
    other = django_user_model.objects.create_user("otto")
    first_job, second_job = make_job(), make_job()
    [a, b, c, d, e, f] = [
        make_instance(first_job, instruction=i, output=o, task=task, language=lang)
        for (i, o), task, lang in zip(
            CLEAN,
            ["generation", "generation", "repair", "generation", "generation", "summarization"],
            ["python", "java", "python", "python", "python", "python"],
            strict=True,
        )
    ]
    Instance.objects.filter(pk=e.pk).update(job=second_job)
    for instance in (a, b, c, e, f):
        accept(instance, reviewer)
    accept(d, other)
    Review.objects.filter(instance=f).update(created_at=timezone.now() - timedelta(days=10))

    def chosen(**filters) -> set[int]:
        return set(datasets.accepted_instances(InstanceFilter(**filters)).values_list("id", flat=True))

    assert chosen() == {a.pk, b.pk, c.pk, d.pk, e.pk, f.pk}
    assert chosen(tasks=["generation"]) == {a.pk, b.pk, d.pk, e.pk}
    assert chosen(languages=["java"]) == {b.pk}
    assert chosen(job_ids=[second_job.pk]) == {e.pk}
    assert chosen(reviewer_ids=[other.pk]) == {d.pk}
    assert chosen(accepted_until=timezone.now() - timedelta(days=1)) == {f.pk}
    assert chosen(accepted_from=timezone.now() - timedelta(days=1), tasks=["summarization"]) == set()
    version = build(
        filters=InstanceFilter(tasks=("generation",), languages=("python",), reviewer_ids=(reviewer.pk,))
    )
    assert set(version.items.values_list("instance_id", flat=True)) == {a.pk, e.pk}


# --- Decontamination ---------------------------------------------------------------------------------------


def test_planted_humaneval_leaks_are_left_out_and_reported(reviewer):
    clean = make_clean(reviewer)
    leaks = {
        kind: make_accepted(reviewer, instruction="Write a Python function.", output=code)
        for kind, code in humaneval_leaks().items()
    }

    version = build()

    assert version.status == DatasetVersion.Status.SUCCEEDED, version.error
    kept = set(version.items.values_list("instance_id", flat=True))
    assert kept == {i.pk for i in clean}
    flagged = version.exclusions.filter(reason=DatasetExclusion.Reason.CONTAMINATED)
    for kind, instance in leaks.items():
        matches = list(flagged.filter(instance=instance))
        assert matches, kind
        assert {(m.benchmark, m.benchmark_item) for m in matches} == {("HumanEval", LEAK_ITEMS[kind])}
        assert all(m.score >= 0.5 and m.method in ("ngram", "substring") and m.detail for m in matches)
    # The renamed, reformatted copy has no name or layout in common with the original: n-grams catch it.
    assert flagged.get(instance=leaks["renamed_reformatted"]).method == "ngram"
    report = version.report["decontamination"]
    assert report["instances"] == 3 and report["by_benchmark"] == {"HumanEval": 3}
    assert report["benchmarks"] == [{"name": "HumanEval", "items": 164}] and report["embedding"] is None
    assert version.report["candidates"] == len(clean) + 3


def test_the_embedding_method_is_on_by_default_and_flags_close_neighbours(reviewer):
    from training.benchmarks import humaneval_items

    item = humaneval_items()[7]
    make_clean(reviewer)
    # The item's words in reverse order: no n-gram or substring survives, the bag of words is the same.
    reworded = make_accepted(
        reviewer,
        instruction=" ".join(reversed(item.text.split())),
        output=" ".join(reversed(item.code.split())),
    )
    embedder = HashingEmbedder()

    version = create_version()
    assert version.use_embeddings and version.embedding_model == "all-MiniLM-L6-v2"
    version = build_version(version.pk, embedder=embedder)

    assert version.status == DatasetVersion.Status.SUCCEEDED, version.error
    [match] = version.exclusions.filter(reason=DatasetExclusion.Reason.CONTAMINATED)
    assert (match.instance_id, match.benchmark_item, match.method) == (reworded.pk, item.item_id, "embedding")
    assert match.score > 0.95
    assert embedder.calls[0] == 164  # the benchmark items, then the instances
    assert version.report["decontamination"]["embedding"] == {"model": "all-MiniLM-L6-v2", "threshold": 0.8}


def test_an_uploaded_benchmark_is_checked_too(reviewer, tmp_path):
    lines = (shared_data_dir() / "wavecoder-ultra" / "mbpp-samples.jsonl").read_text().splitlines()[:20]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join(lines) + "\n")
    mbpp = datasets.add_benchmark(path, name="MBPP sample")
    assert (mbpp.item_count, mbpp.kind) == (20, Benchmark.Kind.UPLOAD)
    item = json.loads(lines[3])
    solution = item["solution"].split('"""', 2)[2]  # the code without its statement
    make_clean(reviewer)
    leak = make_accepted(reviewer, instruction="Solve the problem.", output=solution)

    version = build(benchmarks=[Benchmark.humaneval(), mbpp])

    assert leak.pk not in set(version.items.values_list("instance_id", flat=True))
    assert version.exclusions.filter(
        instance=leak, benchmark="MBPP sample", benchmark_item=item["task_id"]
    ).exists()
    assert [b["name"] for b in version.report["decontamination"]["benchmarks"]] == [
        "HumanEval",
        "MBPP sample",
    ]


def test_a_bad_benchmark_upload_is_refused_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "Do it.", "code": "x = 1"}\n{"text": "broken"\n')
    with pytest.raises(BenchmarkFileError, match="line 2: invalid JSON"):
        datasets.add_benchmark(path, name="Broken")
    assert not Benchmark.objects.filter(name="Broken").exists()
    datasets.add_benchmark(_one_item(tmp_path), name="Mine")
    with pytest.raises(DatasetError, match="already"):
        datasets.add_benchmark(_one_item(tmp_path), name="mine")


def _one_item(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"text": "Do it.", "code": "x = 1"}) + "\n")
    return path


# --- Near duplicates ---------------------------------------------------------------------------------------


def test_near_duplicates_are_removed_and_the_earliest_stays(reviewer):
    code = ordinary_functions(["textwrap"])[3].output
    first = make_accepted(reviewer, instruction="Write the Python function described below.", output=code)
    near = make_accepted(
        reviewer, instruction="Write the Python function described below!", output=code.replace("    ", "  ")
    )
    clean = make_clean(reviewer)

    version = build()

    kept = set(version.items.values_list("instance_id", flat=True))
    assert kept == {first.pk, *(i.pk for i in clean)}
    [dup] = version.exclusions.filter(reason=DatasetExclusion.Reason.NEAR_DUPLICATE)
    assert (dup.instance_id, dup.duplicate_of_id, dup.method) == (near.pk, first.pk, "minhash")
    assert 0.7 <= dup.score <= 1.0
    assert version.report["dedup"] == {
        "method": "MinHash-LSH", "threshold": 0.7, "num_perm": 256, "shingle_size": 5, "removed": 1
    }  # fmt: skip


def test_near_duplicates_confirms_lsh_candidates_on_the_signatures():
    texts = [f"def f(x):\n    return x + {i} * {i}  # step {i}" for i in range(3)] + [
        "completely different text"
    ]
    found = datasets.near_duplicates(texts * 2, threshold=0.7)
    assert set(found) == {4, 5, 6, 7}
    assert {found[i][0] for i in (4, 5, 6, 7)} == {0, 1, 2, 3} and all(s == 1.0 for _, s in found.values())


# --- Task mix ----------------------------------------------------------------------------------------------


def _distinct(reviewer, counts: dict[str, int]) -> None:
    """Accepted instances of each task, every one a different real function (no near duplicates)."""
    functions = iter(ordinary_functions(["textwrap", "shlex", "string", "csv", "json.decoder"]))
    job = make_job()
    for task, n in counts.items():
        for _ in range(n):
            function = next(functions)
            make_accepted(
                reviewer, job=job, task=task, instruction=function.instruction, output=function.output
            )


def test_the_codeocean_mix_is_met_as_closely_as_the_data_allows(reviewer):
    _distinct(reviewer, {"generation": 10, "summarization": 3, "repair": 3, "translation": 2})

    version = build(task_mix="codeocean")

    assert version.status == DatasetVersion.Status.SUCCEEDED, version.error
    mix = version.report["mix"]
    # 17 is the largest total whose shares fit what is available (10/0.57 = 17.5 generation instances).
    assert version.item_count == 17
    # 17 × (57, 16, 16, 11)% = 9.69, 2.72, 2.72, 1.87: floors, then the largest remainders get one more.
    assert mix["kept"] == {"generation": 9, "repair": 3, "summarization": 3, "translation": 2}
    assert mix["target"] == CODEOCEAN_MIX
    assert mix["available"] == {"generation": 10, "summarization": 3, "repair": 3, "translation": 2}
    assert sum(mix["achieved"].values()) == pytest.approx(1.0)
    assert all(abs(mix["achieved"][task] - share) < 0.05 for task, share in CODEOCEAN_MIX.items())
    assert version.report["by_task"] == mix["kept"]


def test_a_mix_and_a_size_limit_pick_the_same_rows_for_the_same_seed(reviewer):
    _distinct(reviewer, {"generation": 8, "repair": 8})
    a = build(task_mix="generation=75,repair=25", max_size=8, seed=3)
    b = build(task_mix={"generation": 0.75, "repair": 0.25}, max_size=8, seed=3)
    c = build(task_mix="generation=75,repair=25", max_size=8, seed=4)
    assert a.report["mix"]["kept"] == {"generation": 6, "repair": 2}
    assert item_texts(a) == item_texts(b)
    assert item_texts(a) != item_texts(c)
    # Without a mix, a size limit keeps the tasks' proportions.
    d = build(max_size=4)
    assert d.report["mix"]["kept"] == {"generation": 2, "repair": 2}


def test_a_mix_that_needs_a_missing_task_fails_with_a_reason(reviewer):
    _distinct(reviewer, {"generation": 3})
    version = build(task_mix="codeocean")
    assert version.status == DatasetVersion.Status.FAILED
    assert "asks for repair, summarization, translation" in version.error
    assert not version.items.exists() and not version.exclusions.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("codeocean", CODEOCEAN_MIX),
        ("generation=3, repair=1", {"generation": 0.75, "repair": 0.25}),
        ("generation=50%,repair=50%,translation=0", {"generation": 0.5, "repair": 0.5}),
        ("", {}),
    ],
)
def test_task_mixes_are_read_from_presets_and_pairs(text, expected):
    assert parse_mix(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("generation", "task=share pairs"),
        ("generation=x", "task=share pairs"),
        ("cooking=1", "Unknown task in the mix: cooking"),
        ("generation=-1", "non-negative"),
        ("generation=0", "not all zero"),
    ],
)
def test_bad_task_mixes_are_refused(text, message):
    with pytest.raises(DatasetError, match=message):
        parse_mix(text)


# --- Numbering, immutability, failures, progress -----------------------------------------------------------


def test_versions_are_numbered_and_never_change_once_built(reviewer):
    [instance, *_] = make_clean(reviewer)
    first = build()
    second = create_version(name="second")
    assert (first.number, second.number, str(second)) == (1, 2, "Dataset v2 · second")
    before = item_texts(first)
    files = {path.name: path.read_bytes() for path in first.folder.iterdir() if path.is_file()}

    Instance.objects.filter(pk=instance.pk).update(output="def changed():\n    pass")
    assert build_version(first.pk).finished_at == first.finished_at  # a finished build is not redone
    first.refresh_from_db()
    assert item_texts(first) == before
    assert {path.name: path.read_bytes() for path in first.folder.iterdir() if path.is_file()} == files


def test_a_build_with_nothing_to_take_fails_and_says_why(reviewer):
    make_instance(make_job())  # judged but never accepted
    version = build()
    assert version.status == DatasetVersion.Status.FAILED
    assert version.error == "No accepted instance matches this version's filters."


def test_a_benchmark_whose_file_is_gone_fails_the_build(reviewer, tmp_path):
    make_clean(reviewer)
    benchmark = datasets.add_benchmark(_one_item(tmp_path), name="Gone")
    Path(benchmark.file).unlink()
    version = build(benchmarks=[benchmark])
    assert version.status == DatasetVersion.Status.FAILED
    assert version.error.startswith("Benchmark Gone cannot be read:")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filters": InstanceFilter(tasks=("cooking",))}, "Tasks must be some of"),
        (
            {"filters": InstanceFilter(tasks=("generation",)), "task_mix": "codeocean"},
            "task filter leaves out",
        ),
        ({"max_size": 0}, "at least 1"),
        ({"ngram_threshold": 0}, "n-gram threshold must be in"),
        ({"embedding_threshold": 2}, "embedding threshold must be in"),
        ({"near_dup_threshold": 0.995}, "too high"),
        (
            {
                "filters": InstanceFilter(
                    accepted_from=timezone.now(), accepted_until=timezone.now() - timedelta(1)
                )
            },
            "must end after it starts",
        ),
    ],
)
def test_bad_settings_are_refused_before_anything_is_made(params, message):
    with pytest.raises(DatasetError, match=message):
        create_version(**params)
    assert not DatasetVersion.objects.exists()


def test_progress_goes_through_every_phase(reviewer):
    make_clean(reviewer)
    seen: list[tuple[str, int, int]] = []
    version = create_version(use_embeddings=False)
    build_version(version.pk, on_progress=lambda *args: seen.append(args))
    phases = list(dict.fromkeys(phase for phase, _, _ in seen))
    assert phases == ["collecting", "decontaminating", "deduplicating", "saving", "exporting"]
    assert ("exporting", len(CLEAN), len(CLEAN)) in seen
    version.refresh_from_db()
    assert (version.phase, version.percent) == ("done", 100)


def test_the_build_task_runs_on_the_default_queue():
    from training.tasks import build_dataset_version
    from wavecoder_site.celery import app

    route = app.amqp.router.route(build_dataset_version._get_exec_options(), build_dataset_version.name)
    assert route["queue"].name == "default"


def test_start_version_queues_the_build_after_commit(
    reviewer, django_capture_on_commit_callbacks, monkeypatch
):
    from training import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.build_dataset_version, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        version = datasets.start_version(name="queued")
    assert queued == [version.pk] and version.status == DatasetVersion.Status.QUEUED
