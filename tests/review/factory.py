"""Judged instances made directly in the database (no LLM), ready for review."""

import hashlib

from curation.models import (
    CodeSample,
    CodeSource,
    CodeTask,
    GenerationJob,
    Instance,
    RuleVerdict,
    SelectionRun,
    Verdict,
)
from tests.curation.pipeline_factory import make_selection


def make_job(*, overlap: int = 1) -> GenerationJob:
    return GenerationJob.objects.create(
        selection_run=SelectionRun.objects.first() or make_selection(1),
        tasks=["generation", "repair"],
        samples_per_task=1,
        generator_model="stub",
        discriminator_model="stub",
        status=GenerationJob.Status.SUCCEEDED,
        overlap=overlap,
    )


def make_instance(
    job: GenerationJob,
    *,
    task: str = "generation",
    language: str = "python",
    passed: bool = True,
    failed_rules: tuple[str, ...] = (),
    instruction: str = "Write a Python function that adds two numbers.",
    output: str = "def add(a, b):\n    return a + b",
) -> Instance:
    code_task = CodeTask.objects.select_related("current_prompt", "current_principles").get(slug=task)
    source, _ = CodeSource.objects.get_or_create(name="review", kind="directory", location="/review")
    n = Instance.objects.count()
    code = f"def f{n}(x):\n    return x + {n}\n"
    sample = CodeSample.objects.create(
        source=source,
        language=language,
        code=code,
        n_chars=len(code),
        content_hash=hashlib.sha256(code.encode()).hexdigest(),
        minhash=b"",
    )
    instance = Instance.objects.create(
        job=job,
        sample=sample,
        task=code_task,
        prompt_version=code_task.current_prompt,
        generator_model="stub",
        status=Instance.Status.DONE,
        stage=Instance.Stage.JUDGED,
        language=language,
        instruction=instruction,
        input="",
        output=output,
        tests="assert add(1, 2) == 3",
        checks=[{"name": "output_parses", "passed": True, "detail": ""}],
        execution_status="passed",
    )
    principles = code_task.current_principles
    passed = passed and not failed_rules
    verdict = Verdict.objects.create(
        instance=instance,
        principle_version=principles,
        model="stub",
        passed=passed,
        reasons="All rules satisfied." if passed else "Failed.",
    )
    RuleVerdict.objects.bulk_create(
        RuleVerdict(
            verdict=verdict,
            rule_id=rule["id"],
            question=rule["question"],
            passed=rule["id"] not in failed_rules,
            reason=f"checked {rule['id']}",
        )
        for rule in principles.rules
    )
    Instance.objects.filter(pk=instance.pk).update(verdict=verdict, passed=passed)
    instance.refresh_from_db()
    return instance


def make_instances(n: int, *, overlap: int = 1, **kw) -> list[Instance]:
    job = make_job(overlap=overlap)
    return [make_instance(job, **kw) for _ in range(n)]


def rules_of(task: str = "generation") -> list[str]:
    return [rule["id"] for rule in CodeTask.objects.get(slug=task).current_principles.rules]
