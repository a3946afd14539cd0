"""HumanEval of a model: generate completions with transformers, then score them in the sandbox.

Generation follows the standard HumanEval harness (Chen et al. 2021): the model continues each problem's
prompt (a signature and docstring), and the continuation is cut at the first of the stop sequences
`HUMANEVAL_STOP` ("\\ndef ", "\\nclass ", "\\nif __name__", "\\nprint(", "\\n#": where a new top-level
statement begins). Greedy decoding with n=1 gives pass@1 as WaveCoder reports it; sampling with n>1 gives
the unbiased pass@k estimate. Scoring is `training.evaluation.evaluate_samples`, the same code as
`manage.py evaluate --samples`, so the generated code runs only in the sandbox (`curation/sandbox.py`).

Two prompt styles: "completion" (the bare HumanEval prompt, for base models) and "alpaca" (the prompt
inside WaveCoder's Alpaca template, with the response primed with the function's own prompt so the
continuation is scored exactly like a completion; for models fine-tuned on that template).

The model sits behind one small interface, `CompletionModel`; `TransformersCompletionModel` is the real
one (batched, left-padded generation that stops each row at a stop sequence). Multi-GPU generation is not
done here: a single process on one device.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from training.evaluation import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_WORKERS,
    REPORTED_KS,
    EvaluationResult,
    ProgressCallback,
    evaluate_samples,
    pass_at_k,
    read_humaneval,
)
from training.finetune import Hardware, TrainingError, alpaca_prompt, resolve_model

# The standard harness's stop sequences: each starts a new top-level statement after the function.
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
# A model trained on fenced answers closes the fence after the code.
ALPACA_STOP = (*HUMANEVAL_STOP, "\n```")
PROMPT_STYLES = ("completion", "alpaca")
ALPACA_INSTRUCTION = "Complete the following Python function."
# Codex's best temperature for pass@1 estimated from several samples (0.8 suits pass@100).
SAMPLING_TEMPERATURE = 0.2
DEFAULT_MAX_NEW_TOKENS = 512


@runtime_checkable
class CompletionModel(Protocol):
    """Something that continues text. `name` identifies it in results."""

    name: str

    def complete(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        seed: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        """`n` continuations of each prompt (greedy when temperature is 0), each cut before the first stop
        sequence; `on_progress(done, total)` counts prompts."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str] = HUMANEVAL_STOP) -> str:
    """`text` up to (not including) the earliest stop sequence, as the HumanEval harness truncates."""
    cut = min((i for s in stop if (i := text.find(s)) != -1), default=len(text))
    return text[:cut]


def humaneval_prompt(problem: Mapping[str, Any], style: str = "completion") -> str:
    """What the model is asked to continue for `problem` in the given prompt style."""
    if style == "completion":
        return problem["prompt"]
    if style == "alpaca":
        return alpaca_prompt(ALPACA_INSTRUCTION, problem["prompt"]) + problem["prompt"]
    raise ValueError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, not {style!r}")


class TransformersCompletionModel:
    """A local causal LM (a folder or a registered model name) run by transformers on one device.

    Prompts are generated `batch_size` sequences at a time (n samples of a prompt count as n), longest
    first so that a batch holds prompts of similar length and an out-of-memory shows up at once.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 8,
        dtype: str = "auto",
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.source = str(model)
        self.name = name or self.source
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.model: Any = None
        self.tokenizer: Any = None

    def load(self) -> None:
        """Load the model and tokenizer (a registered model is prepared first); safe to call twice."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hardware = Hardware.detect()
        device = self.device or hardware.device
        dtype = self.dtype
        if dtype == "auto":
            dtype = "bfloat16" if hardware.bf16 else "float32"
        path = resolve_model(self.source)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
        model.to(device).eval()
        # Sampling settings come from each call; the checkpoint's defaults would only cause warnings.
        model.generation_config.temperature = None
        model.generation_config.top_p = None
        model.generation_config.top_k = None
        self.model, self.tokenizer = model, tokenizer

    def complete(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        seed: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        import torch

        self.load()
        torch.manual_seed(seed)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        per_call = max(1, self.batch_size // n)
        sampling = {"temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        results: list[list[str]] = [[] for _ in prompts]
        done = 0
        for start in range(0, len(order), per_call):
            batch = order[start : start + per_call]
            inputs = self.tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True)
            inputs = inputs.to(self.model.device)
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=n,
                    do_sample=temperature > 0,
                    pad_token_id=self.tokenizer.pad_token_id,
                    stop_strings=list(stop) or None,
                    tokenizer=self.tokenizer,
                    **sampling,
                )
            texts = self.tokenizer.batch_decode(
                output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
            for j, index in enumerate(batch):
                results[index] = [truncate_at_stop(text, stop) for text in texts[j * n : (j + 1) * n]]
            done += len(batch)
            if on_progress:
                on_progress(done, len(prompts))
        return results


@dataclass
class ProblemResult:
    """One problem: its n completions, how each fared in the sandbox, and pass@1 for the problem."""

    task_id: str
    completions: list[str]
    outcomes: list[str]
    details: list[str]

    @property
    def n(self) -> int:
        return len(self.completions)

    @property
    def passed(self) -> int:
        return self.outcomes.count("passed")

    @property
    def pass_at_1(self) -> float:
        return pass_at_k(self.n, self.passed, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n, "passed": self.passed, "pass_at_1": self.pass_at_1}


@dataclass
class ModelEvaluation:
    """A model's HumanEval run: per-problem results, pass@k over the problems, and the settings used."""

    model: str
    settings: dict[str, Any]
    problems: list[ProblemResult]
    pass_at_k: dict[int, float]
    generation_s: float
    scoring_s: float
    scoring: EvaluationResult | None = field(default=None, repr=False)

    @property
    def pass_at_1(self) -> float:
        return self.pass_at_k.get(1, 0.0)

    def samples(self) -> list[dict[str, str]]:
        """The completions as a samples file's lines (`manage.py evaluate --samples` rescores them)."""
        return [{"task_id": p.task_id, "completion": c} for p in self.problems for c in p.completions]

    def write_samples(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text("".join(json.dumps(s) + "\n" for s in self.samples()), encoding="utf-8")
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "settings": self.settings,
            "pass_at_k": {f"pass@{k}": v for k, v in sorted(self.pass_at_k.items())},
            "problems": [p.to_dict() for p in self.problems],
            "generation_s": round(self.generation_s, 2),
            "scoring_s": round(self.scoring_s, 2),
        }


def select_problems(
    problems: Mapping[str, Mapping[str, Any]],
    *,
    task_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Mapping[str, Any]]:
    """The problems to run: the given task ids (in that order), else all, then the first `limit`."""
    if task_ids is not None:
        unknown = [t for t in task_ids if t not in problems]
        if unknown:
            raise ValueError(f"unknown task id(s): {', '.join(unknown)}")
        chosen = [problems[t] for t in dict.fromkeys(task_ids)]
    else:
        chosen = list(problems.values())
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        chosen = chosen[:limit]
    if not chosen:
        raise ValueError("no problems to evaluate")
    return chosen


def evaluate_model(
    model: CompletionModel | str | Path,
    *,
    task_ids: Sequence[str] | None = None,
    limit: int | None = None,
    n: int = 1,
    temperature: float | None = None,
    top_p: float = 0.95,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    prompt_style: str = "completion",
    seed: int = 0,
    batch_size: int = 8,
    workers: int = DEFAULT_WORKERS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    ks: Sequence[int] = REPORTED_KS,
    problems: Mapping[str, Mapping[str, Any]] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ModelEvaluation:
    """HumanEval pass@k of `model` (a CompletionModel, a model folder or a registered model name).

    n=1 is greedy unless a temperature is given; n>1 samples at `temperature` (default 0.2) and reports
    the unbiased pass@k for each k in `ks` up to n. `task_ids` or `limit` pick a subset. Progress goes to
    `on_progress(phase, done, total)`: "generating" counts problems, then "evaluating" counts samples.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if temperature is None:
        temperature = 0.0 if n == 1 else SAMPLING_TEMPERATURE
    if temperature < 0:
        raise ValueError(f"temperature cannot be negative ({temperature})")
    if n > 1 and temperature == 0:
        raise ValueError("n > 1 needs sampling (temperature > 0): greedy samples would all be the same")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], not {top_p}")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    stop = HUMANEVAL_STOP if prompt_style == "completion" else ALPACA_STOP
    problems = read_humaneval() if problems is None else problems
    chosen = select_problems(problems, task_ids=task_ids, limit=limit)
    prompts = [humaneval_prompt(p, prompt_style) for p in chosen]  # checks the style too
    if not isinstance(model, CompletionModel):
        model = TransformersCompletionModel(model, batch_size=batch_size)

    started = time.monotonic()
    if on_progress:
        on_progress("generating", 0, len(chosen))
    completions = model.complete(
        prompts,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        on_progress=(lambda done, total: on_progress("generating", done, total)) if on_progress else None,
    )
    generation_s = time.monotonic() - started
    if len(completions) != len(chosen) or any(len(c) != n for c in completions):
        raise RuntimeError(f"{model.name} returned the wrong number of completions")

    samples = [
        {"task_id": problem["task_id"], "completion": completion}
        for problem, texts in zip(chosen, completions, strict=True)
        for completion in texts
    ]
    scored = evaluate_samples(
        samples, problems=problems, workers=workers, timeout_s=timeout_s, ks=ks, on_progress=on_progress
    )
    results = iter(scored.results)  # in the samples' order: n per problem
    per_problem = []
    for problem, texts in zip(chosen, completions, strict=True):
        runs = [next(results) for _ in texts]
        per_problem.append(
            ProblemResult(
                task_id=problem["task_id"],
                completions=list(texts),
                outcomes=[r.outcome for r in runs],
                details=[r.detail for r in runs],
            )
        )
    return ModelEvaluation(
        model=model.name,
        settings={
            "n": n,
            "temperature": temperature,
            "top_p": top_p if temperature > 0 else None,
            "max_new_tokens": max_new_tokens,
            "prompt_style": prompt_style,
            "seed": seed,
            "problems": len(chosen),
        },
        problems=per_problem,
        pass_at_k=scored.pass_at_k,
        generation_s=generation_s,
        scoring_s=scored.duration_s,
        scoring=scored,
    )


def side_by_side(base: ModelEvaluation, tuned: ModelEvaluation) -> dict[str, Any]:
    """Base against tuned on the problems both ran: a row per problem (pass@1 of each) and the counts of
    problems the tuning fixed (failed → passed) and broke (passed → failed), judged by pass@1 > 0.5."""
    tuned_by_task = {p.task_id: p for p in tuned.problems}
    rows = []
    for problem in base.problems:
        other = tuned_by_task.get(problem.task_id)
        if other is None:
            continue
        rows.append({"task_id": problem.task_id, "base": problem.pass_at_1, "tuned": other.pass_at_1})
    return {
        "base": {"model": base.model, "pass_at_k": base.pass_at_k},
        "tuned": {"model": tuned.model, "pass_at_k": tuned.pass_at_k},
        "rows": rows,
        "fixed": sum(r["base"] <= 0.5 < r["tuned"] for r in rows),
        "broken": sum(r["tuned"] <= 0.5 < r["base"] for r in rows),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.model_eval --model PATH_OR_NAME [--limit N | --task-ids …] [--n N] --out FILE`:
    evaluate one model on HumanEval and write the per-problem results as JSON (and the samples as JSONL)."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m training.model_eval", description=main.__doc__)
    parser.add_argument("--model", required=True, help="a model folder or a registered model name")
    parser.add_argument("--limit", type=int, help="the first N problems only")
    parser.add_argument("--task-ids", nargs="+", help="these problems only, e.g. HumanEval/0 HumanEval/1")
    parser.add_argument("--n", type=int, default=1, help="samples per problem (n>1 samples at --temperature)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--prompt-style", choices=PROMPT_STYLES, default="completion")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument("--samples-out", help="the completions as a samples JSONL file")
    options = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")  # the sandbox's limits

    def report(phase: str, done: int, total: int) -> None:
        print(json.dumps({"phase": phase, "done": done, "total": total}), flush=True)

    try:
        result = evaluate_model(
            TransformersCompletionModel(options.model, batch_size=options.batch_size),
            task_ids=options.task_ids,
            limit=options.limit,
            n=options.n,
            temperature=options.temperature,
            max_new_tokens=options.max_new_tokens,
            prompt_style=options.prompt_style,
            seed=options.seed,
            on_progress=report,
        )
    except TrainingError as exc:  # the model: missing, or not loadable
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(options.out).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if options.samples_out:
        result.write_samples(options.samples_out)
    ks = ", ".join(f"pass@{k} {100 * v:.1f}%" for k, v in sorted(result.pass_at_k.items()))
    print(f"{result.model}: {ks} on {len(result.problems)} problems", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
