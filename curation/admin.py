from django.conf import settings
from django.contrib import admin
from django.utils import timezone
from knox import admin as knox_admin
from knox.models import AuthToken

from .models import (
    CodeSample,
    CodeSource,
    CodeTask,
    EmbeddingSet,
    GenerationJob,
    IngestRun,
    Instance,
    LLMCall,
    PoolExample,
    PrincipleVersion,
    RuleVerdict,
    SelectionPick,
    SelectionRun,
    TaskPromptVersion,
    Verdict,
)


@admin.register(CodeSource)
class CodeSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "location", "license", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "location", "repo"]


@admin.register(CodeSample)
class CodeSampleAdmin(admin.ModelAdmin):
    list_display = ["id", "func_name", "language", "path", "n_chars", "source"]
    list_filter = ["language", "source"]
    search_fields = ["func_name", "path", "repo"]
    readonly_fields = ["content_hash", "ingest_run"]
    list_select_related = ["source"]


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "status", "kept_count", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["report", "options", "error"]


class SelectionPickInline(admin.TabularInline):
    model = SelectionPick
    extra = 0
    raw_id_fields = ["sample"]
    readonly_fields = ["rank", "distance"]


@admin.register(SelectionRun)
class SelectionRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "k",
        "seed",
        "model_name",
        "status",
        "coverage_radius",
        "random_radius",
        "created_at",
    ]
    list_filter = ["status", "model_name"]
    inlines = [SelectionPickInline]


@admin.register(EmbeddingSet)
class EmbeddingSetAdmin(admin.ModelAdmin):
    list_display = ["id", "model_name", "dim", "count", "dtype", "created_at"]


# --- Stage 2 ----------------------------------------------------------------------------------------


class TaskPromptVersionInline(admin.TabularInline):
    model = TaskPromptVersion
    extra = 0
    fields = ["version", "definition", "note", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False


class PrincipleVersionInline(admin.TabularInline):
    model = PrincipleVersion
    extra = 0
    fields = ["version", "rules", "note", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(CodeTask)
class CodeTaskAdmin(admin.ModelAdmin):
    """Tasks with their prompt and principle versions (edit them on the Tasks page: edits make versions)."""

    list_display = ["name", "slug", "current_prompt", "current_principles"]
    readonly_fields = ["slug"]
    inlines = [TaskPromptVersionInline, PrincipleVersionInline]


@admin.register(TaskPromptVersion)
class TaskPromptVersionAdmin(admin.ModelAdmin):
    list_display = ["task", "version", "note", "created_by", "created_at"]
    list_filter = ["task"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # versions are immutable: instances record which one made them


@admin.register(PrincipleVersion)
class PrincipleVersionAdmin(TaskPromptVersionAdmin):
    pass


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "selection_run",
        "tasks",
        "status",
        "paused",
        "progress_total",
        "prompt_tokens",
        "completion_tokens",
        "created_at",
    ]
    list_filter = ["status"]
    readonly_fields = ["prompt_tokens", "completion_tokens", "error"]


class RuleVerdictInline(admin.TabularInline):
    model = RuleVerdict
    extra = 0
    readonly_fields = ["rule_id", "question", "passed", "reason"]


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin):
    list_display = ["id", "instance", "principle_version", "model", "passed", "created_at"]
    list_filter = ["passed", "principle_version__task"]
    raw_id_fields = ["instance"]
    inlines = [RuleVerdictInline]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "language", "status", "stage", "passed", "execution_status", "job"]
    list_filter = ["task", "status", "stage", "passed", "execution_status"]
    search_fields = ["instruction"]
    raw_id_fields = ["sample", "job", "verdict"]
    list_select_related = ["task"]


@admin.register(PoolExample)
class PoolExampleAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "kind", "origin", "language", "pinned", "created_at"]
    list_filter = ["task", "kind", "origin", "pinned"]
    raw_id_fields = ["instance"]


@admin.register(LLMCall)
class LLMCallAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "job",
        "role",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "attempts",
    ]
    list_filter = ["role", "model"]
    raw_id_fields = ["job", "instance"]


# --- API tokens: django-rest-knox's admin (the token is shown once), with an expiry always set -------------


class _ExpiringTokenForm(knox_admin.AuthTokenCreateForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # knox leaves a blank expiry as "never"; a token here always ends.
        expiry = self.fields["expiry"]
        expiry.required = True
        expiry.initial = timezone.now() + settings.API_TOKEN_TTL
        expiry.help_text = "The token stops working then (and when the user's password changes)."


admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(knox_admin.AuthTokenAdmin):
    add_form = _ExpiringTokenForm
