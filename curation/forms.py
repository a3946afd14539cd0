"""Forms for the curator pages; they validate what the stage functions then receive."""

from django import forms
from django.conf import settings


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
    min_chars = forms.IntegerField(min_value=1, initial=settings.INGEST_MIN_CHARS)
    max_chars = forms.IntegerField(min_value=1, initial=settings.INGEST_MAX_CHARS)
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
    k = forms.IntegerField(min_value=1, initial=100, label="k (samples to pick)")
    seed = forms.IntegerField(initial=0, help_text="Draws the first center.")
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
