"""HumanEval of a model: prompts, stop sequences, greedy and sampled pass@k, scoring in the sandbox."""

import json
from pathlib import Path

import pytest

from tests.training.tiny_model import build_tiny_model
from training import evaluation
from training.finetune import ALPACA_PROMPT
from training.model_eval import (
    HUMANEVAL_STOP,
    CompletionModel,
    TransformersCompletionModel,
    evaluate_model,
    humaneval_prompt,
    side_by_side,
    truncate_at_stop,
)

PROBLEMS = evaluation.read_humaneval()
THREE = ["HumanEval/0", "HumanEval/2", "HumanEval/4"]


class ScriptedModel:
    """A CompletionModel that answers each problem's prompt with scripted bodies (canonical or wrong)."""

    def __init__(self, name: str, answers):
        self.name = name
        self.answers = answers  # callable(problem, sample index) -> completion
        self.calls = []

    def complete(self, prompts, *, n, temperature, top_p, max_new_tokens, stop, seed, on_progress=None):
        self.calls.append({"n": n, "temperature": temperature, "stop": tuple(stop)})
        by_prompt = {humaneval_prompt(p): p for p in PROBLEMS.values()}
        return [[self.answers(by_prompt[prompt], i) for i in range(n)] for prompt in prompts]


def canonical(problem, i):
    return problem["canonical_solution"]


def wrong(problem, i):
    return "    return None\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_the_canonical_solutions_pass_in_the_sandbox():
    model = ScriptedModel("canonical", canonical)
    assert isinstance(model, CompletionModel)
    progress = []
    result = evaluate_model(model, task_ids=THREE, on_progress=lambda *a: progress.append(a))

    assert result.pass_at_1 == 1.0 and result.pass_at_k == {1: 1.0}
    assert [p.task_id for p in result.problems] == THREE
    assert all(p.outcomes == ["passed"] and p.pass_at_1 == 1.0 for p in result.problems)
    assert model.calls == [{"n": 1, "temperature": 0.0, "stop": HUMANEVAL_STOP}]  # greedy
    assert progress[0] == ("generating", 0, 3) and progress[-1] == ("evaluating", 3, 3)


def test_wrong_code_fails_and_the_reason_is_kept():
    result = evaluate_model(ScriptedModel("wrong", wrong), limit=2)
    assert result.pass_at_1 == 0.0
    assert [p.task_id for p in result.problems] == ["HumanEval/0", "HumanEval/1"]
    assert all(p.outcomes == ["failed"] and p.details[0] for p in result.problems)


def test_sampling_gives_the_unbiased_pass_at_k():
    # Sample 0 of every problem is right, the other three wrong: pass@1 = 1/4, pass@2 = 1 - C(3,2)/C(4,2).
    def first_right(problem, i):
        return canonical(problem, i) if i == 0 else wrong(problem, i)

    model = ScriptedModel("mixed", first_right)
    result = evaluate_model(model, task_ids=THREE[:2], n=4, ks=(1, 2, 10))
    assert model.calls[0]["temperature"] == 0.2
    assert result.pass_at_k == pytest.approx({1: 0.25, 2: 0.5})  # pass@10 needs n >= 10: left out
    assert [p.passed for p in result.problems] == [1, 1]
    assert result.problems[0].pass_at_1 == 0.25
    assert len(result.samples()) == 8


def test_samples_written_out_rescore_with_the_plain_evaluator(tmp_path):
    result = evaluate_model(ScriptedModel("canonical", canonical), task_ids=THREE)
    path = result.write_samples(tmp_path / "samples.jsonl")
    rescored = evaluation.evaluate_samples(path)
    assert rescored.passed == 3 and rescored.pass_at_k[1] == 1.0
    assert json.loads(json.dumps(result.to_dict()))["pass_at_k"] == {"pass@1": 1.0}


def test_base_against_tuned_side_by_side():
    def right_on_zero(problem, i):
        return canonical(problem, i) if problem["task_id"] == "HumanEval/0" else wrong(problem, i)

    base = evaluate_model(ScriptedModel("base", right_on_zero), task_ids=THREE)
    tuned = evaluate_model(ScriptedModel("tuned", canonical), task_ids=THREE)
    table = side_by_side(base, tuned)
    assert table["fixed"] == 2 and table["broken"] == 0
    assert table["rows"][1] == {"task_id": "HumanEval/2", "base": 0.0, "tuned": 1.0}
    assert table["base"]["pass_at_k"][1] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("    return 1\n\ndef helper():\n    pass\n", "    return 1\n"),
        ("    return 1\nif __name__ == '__main__':\n    main()\n", "    return 1"),
        ("    return 1\nprint(f(2))\n", "    return 1"),
        ("    return 1\n# a test\n", "    return 1"),
        ("    return 1\nclass A:\n", "    return 1"),
        ("    # inside\n    def inner():\n        return 1\n    return inner()\n", None),  # indented: kept
    ],
)
def test_completions_are_cut_at_the_harness_stop_sequences(text, expected):
    assert truncate_at_stop(text) == (text if expected is None else expected)


def test_prompt_styles():
    problem = PROBLEMS["HumanEval/0"]
    assert humaneval_prompt(problem) == problem["prompt"]
    alpaca = humaneval_prompt(problem, "alpaca")
    assert alpaca.startswith(ALPACA_PROMPT.split("{instruction}")[0])
    assert alpaca.endswith("### Response:\n" + problem["prompt"])  # primed with the function itself
    with pytest.raises(ValueError, match="prompt style"):
        humaneval_prompt(problem, "chat")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 2, "temperature": 0}, "n > 1 needs sampling"),
        ({"n": 0}, "n must be at least 1"),
        ({"task_ids": ["HumanEval/999"]}, "unknown task id"),
        ({"limit": 0}, "limit must be at least 1"),
        ({"prompt_style": "chat"}, "prompt style"),
        ({"top_p": 0}, "top_p"),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_model(ScriptedModel("canonical", canonical), **kwargs)


def test_a_real_model_is_evaluated_on_a_few_problems(tiny_model):
    """The tiny untrained model writes nonsense, but the whole path runs: batched generation with stop
    sequences, greedy and sampled, both prompt styles, and sandboxed scoring."""
    model = TransformersCompletionModel(tiny_model, batch_size=2, name="tiny")
    greedy = evaluate_model(model, task_ids=THREE[:2], max_new_tokens=24)
    assert greedy.model == "tiny" and set(greedy.pass_at_k) == {1}
    assert 0.0 <= greedy.pass_at_1 <= 1.0
    for problem in greedy.problems:
        assert len(problem.completions) == 1 and problem.outcomes[0] in {
            "passed",
            "failed",
            "error",
            "timed out",
        }
        assert not any(stop in problem.completions[0] for stop in HUMANEVAL_STOP)
    again = evaluate_model(model, task_ids=THREE[:2], max_new_tokens=24)
    assert again.samples() == greedy.samples()  # greedy is deterministic

    sampled = evaluate_model(model, task_ids=THREE[2:], n=3, max_new_tokens=8, prompt_style="alpaca", seed=1)
    assert sampled.problems[0].n == 3 and sampled.settings["temperature"] == 0.2


def test_the_command_line_writes_results_and_samples(tiny_model, tmp_path, capsys):
    from training import model_eval

    out, samples = tmp_path / "result.json", tmp_path / "samples.jsonl"
    argv = ["--model", str(tiny_model), "--task-ids", "HumanEval/0", "--max-new-tokens", "8"]
    assert model_eval.main([*argv, "--out", str(out), "--samples-out", str(samples)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == str(tiny_model) and set(result["pass_at_k"]) == {"pass@1"}
    assert json.loads(samples.read_text())["task_id"] == "HumanEval/0"
    assert '"phase": "evaluating", "done": 1, "total": 1' in capsys.readouterr().out
    assert model_eval.main([*argv, "--n", "2", "--temperature", "0", "--out", str(out)]) == 2
