"""Forms for the dataset pages; they validate what the stage functions then receive."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from curation import params
from curation.forms import IdMultipleChoiceField
from curation.models import CodeTask, GenerationJob, Review
from training.datasets import CODEOCEAN_MIX, InstanceFilter, accepted_instances
from training.models import Benchmark, DatasetVersion

_MIX_CHOICES = [
    ("", "As accepted (no task mix)"),
    (
        "codeocean",
        "WaveCoder's CodeOcean: " + ", ".join(f"{t} {round(100 * s)}%" for t, s in CODEOCEAN_MIX.items()),
    ),
    ("custom", "Custom shares (below)"),
]
_DEFAULTS = {field.name: field.default for field in DatasetVersion._meta.fields}


def _day_start(day) -> datetime | None:
    return timezone.make_aware(datetime.combine(day, time.min)) if day else None


class DatasetVersionForm(forms.Form):
    """Filters, task mix and decontamination settings of a new version, with choices drawn from what has
    been accepted (the languages, jobs and reviewers that occur)."""

    name = forms.CharField(max_length=200, required=False)
    note = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="For the card."
    )
    tasks = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every task."
    )
    languages = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    jobs = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="Generation or import jobs; none: all."
    )
    reviewers = IdMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Accepted by any of them.",
    )
    accepted_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    accepted_until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive."
    )
    mix = forms.ChoiceField(choices=_MIX_CHOICES, required=False, label="Task mix")
    max_size = forms.IntegerField(
        min_value=1,
        max_value=params.DATASET_SIZE_MAX,
        required=False,
        help_text="At most this many instances.",
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=params.SEED_MAX,
        initial=0,
        help_text="Which instances a task mix or size limit keeps.",
    )
    benchmarks = IdMultipleChoiceField(
        queryset=None, required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: no check."
    )
    use_embeddings = forms.BooleanField(
        required=False,
        initial=True,
        label="Embedding nearest-neighbour check",
        help_text=f"Also compare embeddings ({settings.EMBEDDING_MODEL}); slower, finds reworded leaks.",
    )
    embedding_threshold = forms.FloatField(
        min_value=-1, max_value=1, initial=_DEFAULTS["embedding_threshold"]
    )
    ngram_threshold = forms.FloatField(min_value=0.01, max_value=1, initial=_DEFAULTS["ngram_threshold"])
    near_dup_threshold = forms.FloatField(
        min_value=0.05,
        max_value=0.98,
        initial=_DEFAULTS["near_dup_threshold"],
        label="Near-duplicate Jaccard",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for slug, label in CodeTask.Slug.choices:
            self.fields[f"mix_{slug}"] = forms.IntegerField(
                min_value=0, max_value=100, required=False, label=f"{label} %"
            )
        self.fields["tasks"].choices = CodeTask.Slug.choices
        accepted = accepted_instances()
        self.fields["languages"].choices = [
            (lang, lang)
            for lang in accepted.order_by("language").values_list("language", flat=True).distinct()
        ]
        counts = dict(accepted.order_by().values_list("job_id").annotate(n=Count("id")))
        jobs = GenerationJob.objects.filter(pk__in=counts).order_by("-pk")
        self.fields["jobs"].choices = [(job.pk, _job_label(job, counts[job.pk])) for job in jobs]
        reviewers = Review.objects.filter(decision=Review.Decision.ACCEPT).values("reviewer_id")
        self.fields["reviewers"].queryset = (
            get_user_model().objects.filter(pk__in=reviewers).order_by("username")
        )
        Benchmark.humaneval()
        self.fields["benchmarks"].queryset = Benchmark.objects.order_by("kind", "name")
        self.fields["benchmarks"].initial = list(Benchmark.objects.filter(kind=Benchmark.Kind.HUMANEVAL))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("mix") == "custom":
            shares = {slug: data.get(f"mix_{slug}") or 0 for slug in CodeTask.Slug.values}
            if not sum(shares.values()):
                raise forms.ValidationError("Give the custom task mix at least one share above 0%.")
            data["task_mix"] = shares
        else:
            data["task_mix"] = data.get("mix") or None
        start, end = data.get("accepted_from"), data.get("accepted_until")
        if start and end and start > end:
            self.add_error("accepted_until", "The period must end on or after the day it starts.")
        return data

    def version_params(self) -> dict[str, Any]:
        """Keyword arguments for `training.datasets.start_version`."""
        data = self.cleaned_data
        until = data.get("accepted_until")
        return {
            "name": data["name"],
            "note": data["note"],
            "filters": InstanceFilter(
                tasks=tuple(data["tasks"]),
                languages=tuple(data["languages"]),
                job_ids=tuple(int(j) for j in data["jobs"]),
                reviewer_ids=tuple(user.pk for user in data["reviewers"]),
                accepted_from=_day_start(data.get("accepted_from")),
                accepted_until=_day_start(until + timedelta(days=1)) if until else None,
            ),
            "task_mix": data["task_mix"],
            "max_size": data.get("max_size"),
            "seed": data.get("seed") or 0,
            "benchmarks": list(data["benchmarks"]),
            "use_embeddings": data["use_embeddings"],
            "embedding_threshold": data["embedding_threshold"],
            "ngram_threshold": data["ngram_threshold"],
            "near_dup_threshold": data["near_dup_threshold"],
        }


def _job_label(job: GenerationJob, accepted: int) -> str:
    if job.kind == GenerationJob.Kind.IMPORT:
        return f"Import #{job.pk} · {job.report.get('file', '')} · {accepted} accepted"
    return f"Generation job #{job.pk} · {', '.join(job.tasks)} · {accepted} accepted"


class BenchmarkForm(forms.Form):
    name = forms.CharField(max_length=100)
    upload = forms.FileField(
        label="JSONL file",
        help_text="One problem per line: a statement (text) field and a solution (code) field.",
    )
    text_field = forms.CharField(max_length=100, required=False, help_text="Empty: prompt, text, question, …")
    code_field = forms.CharField(max_length=100, required=False, help_text="Empty: code, solution, …")
    language = forms.CharField(max_length=40, required=False, help_text="Of the solutions; empty: Python.")


class ImportForm(forms.Form):
    upload = forms.FileField(
        label="Instruction file",
        help_text="Alpaca (instruction/input/output) or ShareGPT (conversations or messages) records, as a "
        "JSON array or JSON Lines: CodeAlpaca, Evol-Instruct, Magicoder files.",
    )
    task = forms.ChoiceField(
        required=False,
        choices=[("", "Infer from each instruction (or the record's own task)"), *CodeTask.Slug.choices],
    )
    language = forms.CharField(max_length=40, required=False, help_text="Empty: read or inferred per record.")
    judge = forms.BooleanField(
        required=False, initial=True, help_text="Send the instances to the Discriminator before review."
    )
    discriminator_model = forms.CharField(max_length=200, initial=settings.LLM_DISCRIMINATOR_MODEL)
    valid_only = forms.BooleanField(
        required=False,
        label="Import the valid records only",
        help_text="By default a file with any bad line imports nothing.",
    )
