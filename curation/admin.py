from django.contrib import admin

from .models import CodeSample, CodeSource, EmbeddingSet, IngestRun, SelectionPick, SelectionRun


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
