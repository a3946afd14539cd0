"""Forms for training and evaluation runs; every check is `training.runs`' own, shown before anything is
queued."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from training import finetune, runs
from training.model_eval import PROMPT_STYLES
from training.models import DatasetVersion, TrainingRun


class _VersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, version: DatasetVersion) -> str:
        name = f" · {version.name}" if version.name else ""
        state = (
            "" if version.status == version.Status.SUCCEEDED else f", {version.get_status_display().lower()}"
        )
        return f"{version.label}{name} ({version.item_count} instances{state})"


# Lower bounds the training config checks itself, with messages that name the value (shown above the
# form with the other problems of the run), so the browser lets them through to it.
_CHECKED_BY_THE_CONFIG = {
    "max_steps",
    "save_steps",
    "max_length",
    "global_batch_size",
    "per_device_batch_size",
    "num_processes",
}


class TrainingRunForm(forms.ModelForm):
    """A run's dataset version, base model, method and hyperparameters (WaveCoder's by default)."""

    dataset_version = _VersionChoice(queryset=DatasetVersion.objects.order_by("-number"), empty_label=None)

    class Meta:
        model = TrainingRun
        fields = ["dataset_version", "base_model", "method", *runs.HYPERPARAMETERS]
        widgets = {
            "lr_scheduler": forms.Select(choices=[(s, s) for s in finetune.SCHEDULERS]),
            "learning_rate": forms.NumberInput(attrs={"step": "any"}),
            "num_epochs": forms.NumberInput(attrs={"step": "any"}),
            "lora_alpha": forms.NumberInput(attrs={"step": "any"}),
            "lora_dropout": forms.NumberInput(attrs={"step": "any"}),
        }
        help_texts = {
            "base_model": "A local transformers folder, or a registered name: "
            + ", ".join(sorted(finetune.REGISTERED_MODELS))
            + " (offline, for CPU demos).",
            "global_batch_size": "Reached through gradient accumulation: a multiple of the batch per "
            "device × processes.",
            "bf16": "Forcing bf16 on a worker without it fails the run there.",
            "packing": "WaveCoder trained without packing. Packed runs are padding-free (FlashAttention 2, "
            "else flex_attention on a GPU): 3–5× the tokens/s of padded runs on an H200 (bench/RESULTS.md).",
            "lora_r": "LoRA only (empty: r 16, alpha 32, dropout 0.05).",
            "num_processes": "GPUs on the worker; several need DDP or FSDP.",
        }

    def __init__(self, *args: Any, preset: str = "", **kwargs: Any) -> None:
        if preset == "cpu-demo":
            kwargs["initial"] = {**runs.CPU_DEMO_PRESET, **kwargs.get("initial", {})}
        super().__init__(*args, **kwargs)
        for name, (low, high) in runs.INTEGER_RANGES.items():
            field = self.fields[name]
            field.max_value = high
            field.validators.append(MaxValueValidator(high))
            field.widget.attrs.update(max=high)
            if name not in _CHECKED_BY_THE_CONFIG:
                field.min_value = low
                field.validators.append(MinValueValidator(low))
                field.widget.attrs.update(min=low)
        self.fields["base_model"].initial = (
            self.fields["base_model"].initial or finetune.TrainConfig.base_model
        )
        latest = (
            DatasetVersion.objects.filter(status=DatasetVersion.Status.SUCCEEDED).order_by("-number").first()
        )
        if latest and not self.is_bound:
            self.fields["dataset_version"].initial = latest.pk

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        for error in runs.check_training_run(TrainingRun(**self.run_params())):
            self.add_error(None, error)
        return data

    def run_params(self) -> dict[str, Any]:
        """Keyword arguments for `runs.start_training`."""
        return {name: self.cleaned_data[name] for name in self._meta.fields}


class EvaluationForm(forms.Form):
    """What to evaluate: a model, or the base and tuned models of a finished training run."""

    training_run = forms.ModelChoiceField(
        queryset=TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED).exclude(final_model_path=""),
        required=False,
        label="Compare base and tuned of run",
        help_text="Two evaluations with the same settings, side by side.",
    )
    model = forms.CharField(
        max_length=1000,
        required=False,
        help_text="Or one model: a local folder or "
        + ", ".join(sorted(finetune.REGISTERED_MODELS))
        + ". Used when no run is chosen.",
    )
    limit = forms.IntegerField(
        min_value=1,
        max_value=164,
        required=False,
        initial=5,
        label="Problems",
        help_text="The first N of 164.",
    )
    n = forms.IntegerField(
        min_value=1, max_value=200, initial=1, help_text="1: greedy pass@1; more: sampled."
    )
    max_new_tokens = forms.IntegerField(min_value=8, max_value=4096, initial=256)
    prompt_style = forms.ChoiceField(choices=[(s, s) for s in PROMPT_STYLES], initial="completion")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("training_run") and not data.get("model"):
            raise forms.ValidationError("Choose a training run to compare, or a model.")
        return data

    def evaluation_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {name: data[name] for name in ("limit", "n", "max_new_tokens", "prompt_style")}
