"""Forms for the curator pages; they validate what the stage functions then receive."""

from django import forms
from django.conf import settings

from . import params


class IdMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Model choices by primary key that refuses what no id column holds before it queries: SQLite
    raises OverflowError for an integer past 64 bits in `pk__in`, where an exact lookup finds nothing."""

    def _check_values(self, value):
        for pk in value:
            if params.whole_number(str(pk)) is None:
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"], code="invalid_choice", params={"value": pk}
                )
        return super()._check_values(value)


class IngestForm(forms.Form):
    upload = forms.FileField(
        required=False,
        help_text="A .zip / .tar.gz archive, or a .jsonl / .parquet file in CodeSearchNet's shape.",
    )
    path = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Or a folder or git checkout on the server (within the allowed roots).",
    )
    min_chars = forms.IntegerField(
        min_value=1, max_value=params.INGEST_CHARS_MAX, initial=settings.INGEST_MIN_CHARS
    )
    max_chars = forms.IntegerField(
        min_value=1, max_value=params.INGEST_CHARS_MAX, initial=settings.INGEST_MAX_CHARS
    )
    use_blacklist = forms.BooleanField(
        required=False, initial=True, help_text="Drop code with Code Alpaca's blacklisted words."
    )

    def clean(self) -> dict:
        data = super().clean()
        if bool(data.get("upload")) == bool(data.get("path")):
            raise forms.ValidationError("Give either a file to upload or a server path, not both.")
        if data.get("min_chars") and data.get("max_chars") and data["min_chars"] >= data["max_chars"]:
            self.add_error("max_chars", "The maximum length must be larger than the minimum.")
        return data


class SelectionForm(forms.Form):
    k = forms.IntegerField(
        min_value=1, max_value=params.SELECTION_K_MAX, initial=100, label="k (samples to pick)"
    )
    seed = forms.IntegerField(
        min_value=0, max_value=params.SEED_MAX, initial=0, help_text="Draws the first center."
    )
    model_name = forms.CharField(
        max_length=300,
        initial=settings.EMBEDDING_MODEL,
        help_text="A sentence-transformers model available offline: a name or a local path.",
    )
    languages = forms.MultipleChoiceField(
        required=False, help_text="Only these languages (none = all).", widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, languages: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["languages"].choices = [(lang, lang) for lang in languages]


class GenerationJobForm(forms.Form):
    selection_run = forms.ModelChoiceField(queryset=None, empty_label=None)
    tasks = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    samples_per_task = forms.IntegerField(
        min_value=1,
        max_value=params.SAMPLES_PER_TASK_MAX,
        initial=5,
        help_text="Raw samples from the selection per task.",
    )
    instances_per_sample = forms.IntegerField(
        min_value=1, max_value=params.INSTANCES_PER_SAMPLE_MAX, initial=1
    )
    generator_model = forms.CharField(max_length=200, initial=settings.LLM_GENERATOR_MODEL)
    discriminator_model = forms.CharField(max_length=200, initial=settings.LLM_DISCRIMINATOR_MODEL)
    concurrency = forms.IntegerField(
        min_value=1, max_value=params.CONCURRENCY_MAX, initial=8, help_text="Requests in flight at once."
    )
    execute = forms.BooleanField(
        required=False, initial=True, help_text="Run Python outputs and asserts in the sandbox."
    )
    tries = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=params.TRIES_MAX,
        initial=settings.GENERATION_TRIES,
        help_text="Generator replies per instance: a reply that does not parse, fails a check or its own "
        "tests goes back to the generator with the error.",
    )

    def __init__(self, *args, **kwargs) -> None:
        from .models import CodeTask, SelectionRun

        super().__init__(*args, **kwargs)
        self.fields["selection_run"].queryset = SelectionRun.objects.filter(
            status=SelectionRun.Status.SUCCEEDED
        )
        self.fields["tasks"].choices = CodeTask.Slug.choices
        self.fields["tasks"].initial = CodeTask.Slug.values


class PromptVersionForm(forms.Form):
    definition = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}))
    requirements = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}), help_text="One requirement per line."
    )
    note = forms.CharField(max_length=300, required=False, help_text="What changed and why.")


class PrinciplesForm(forms.Form):
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="One rule per line: `rule_id: a yes/no question`.",
    )
    note = forms.CharField(max_length=300, required=False, help_text="What changed and why.")

    def clean_rules(self) -> list[dict]:
        from .catalog import parse_rules_text

        try:
            return parse_rules_text(self.cleaned_data["rules"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


class RefinementForm(forms.Form):
    task = forms.ChoiceField(choices=())
    heldout_fraction = forms.FloatField(
        min_value=params.REFINEMENT_HELDOUT_FRACTION[0],
        max_value=params.REFINEMENT_HELDOUT_FRACTION[1],
        initial=0.3,
        help_text="Share of the reviewed instances kept aside to check the proposal.",
    )
    max_cases = forms.IntegerField(
        min_value=1,
        max_value=params.REFINEMENT_CASES_MAX,
        initial=40,
        help_text="Disagreement cases shown to the LLM.",
    )
    max_heldout = forms.IntegerField(
        min_value=1,
        max_value=params.REFINEMENT_HELDOUT_MAX,
        initial=60,
        help_text="Held-out instances judged in the check.",
    )
    seed = forms.IntegerField(
        min_value=0, max_value=params.SEED_MAX, initial=0, help_text="Draws the held-out part."
    )
    model = forms.CharField(max_length=200, initial=settings.LLM_DISCRIMINATOR_MODEL)

    def __init__(self, *args, **kwargs) -> None:
        from .models import CodeTask

        super().__init__(*args, **kwargs)
        self.fields["task"].choices = CodeTask.Slug.choices


class RejudgeForm(forms.Form):
    tasks = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked = every task."
    )
    only_outdated = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Only instances not yet judged with their task's current principles.",
    )
    model = forms.CharField(max_length=200, initial=settings.LLM_DISCRIMINATOR_MODEL)
    concurrency = forms.IntegerField(min_value=1, max_value=settings.LLM_CONCURRENCY, initial=8)

    def __init__(self, *args, **kwargs) -> None:
        from .models import CodeTask

        super().__init__(*args, **kwargs)
        self.fields["tasks"].choices = CodeTask.Slug.choices


# --- Review (curation/review.py checks the decisions; these only read the posted values) -----------


class ReviewEditForm(forms.Form):
    expected_version = forms.IntegerField(min_value=0, max_value=params.INT32_MAX, widget=forms.HiddenInput)
    instruction = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    input = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 6}))
    output = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 10}))
    explanation = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    tests = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4}))


class ReviewRejectForm(forms.Form):
    expected_version = forms.IntegerField(
        min_value=0, max_value=params.INT32_MAX, required=False, widget=forms.HiddenInput
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    rules = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, rule_ids: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rules"].choices = [(rule_id, rule_id) for rule_id in rule_ids]


class ResolveForm(forms.Form):
    decision = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")])
    revision = forms.IntegerField(
        min_value=1, max_value=params.ID_MAX, required=False, help_text="Accept this revision's text."
    )
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    rules = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, rule_ids: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rules"].choices = [(rule_id, rule_id) for rule_id in rule_ids]


class BulkDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")])
    reason = forms.CharField(required=False, max_length=2000)
    confirm_count = forms.IntegerField(
        required=False, min_value=0, max_value=params.INT32_MAX, widget=forms.HiddenInput
    )
