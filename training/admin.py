"""Admin for benchmarks and dataset versions. Versions are read-only here (they never change once built);
two actions work on them: download their export files, and build the ones queued or failed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from training import exports
from training import tasks as training_tasks
from training.models import Benchmark, DatasetVersion


@admin.register(Benchmark)
class BenchmarkAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "item_count", "language", "created_by", "created_at"]
    list_filter = ["kind"]
    readonly_fields = ["kind", "file", "item_count", "created_by", "created_at"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "item_count",
        "contaminated_count",
        "near_duplicate_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["name", "note", "content_hash"]
    list_select_related = ["created_by"]
    actions = ["download_files", "build_versions"]
    readonly_fields = ["page"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made on the Datasets page, through the API or `manage.py export_dataset`

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Page")
    def page(self, version: DatasetVersion) -> str:
        url = reverse("dataset-detail", args=[version.number])
        return format_html('<a href="{}">Report, exclusions and downloads of {}</a>', url, version.label)

    @admin.action(description="Download the export files of the selected versions (zip)")
    def download_files(self, request: HttpRequest, queryset) -> StreamingHttpResponse | None:
        members = []
        for version in queryset.filter(status=DatasetVersion.Status.SUCCEEDED).order_by("number"):
            if version.folder.is_dir():
                members += exports.folder_members(version.folder, f"wavecoder-{version.label}")
        if not members:
            self.message_user(request, "None of the selected versions has export files.", messages.WARNING)
            return None
        numbers = "-".join(str(n) for n in queryset.order_by("number").values_list("number", flat=True))
        response = StreamingHttpResponse(exports.stream_zip(members), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="wavecoder-datasets-{numbers}.zip"'
        return response

    @admin.action(description="Build the selected versions that are queued or failed")
    def build_versions(self, request: HttpRequest, queryset) -> None:
        ready = queryset.filter(status__in=[DatasetVersion.Status.QUEUED, DatasetVersion.Status.FAILED])
        ids = list(ready.values_list("pk", flat=True))
        # A failed build made no rows; it starts again from the same settings under the same number.
        queued = DatasetVersion.Status.QUEUED
        DatasetVersion.objects.filter(pk__in=ids).update(status=queued, error="", phase="")
        for pk in ids:
            transaction.on_commit(lambda pk=pk: training_tasks.build_dataset_version.delay(pk))
        skipped = queryset.count() - len(ids)
        note = f"; {skipped} running or built left as they are" if skipped else ""
        self.message_user(request, f"Queued {len(ids)} build(s){note}.")
