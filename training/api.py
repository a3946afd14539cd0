"""REST API for dataset versions and benchmarks. Every endpoint needs a login (session or token) and the
curator role; versions are created here and built by a worker, then downloaded in any format."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from curation import params
from curation.models import CodeTask
from curation.roles import IsCurator
from training import datasets, exports
from training.benchmarks import BenchmarkFileError
from training.models import Benchmark, DatasetExclusion, DatasetVersion


class DatasetVersionSerializer(serializers.ModelSerializer):
    benchmarks = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    files = serializers.SerializerMethodField(help_text="Per format: its download URL and size in bytes.")

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "name",
            "note",
            "status",
            "phase",
            "progress_done",
            "progress_total",
            "error",
            "tasks",
            "languages",
            "job_ids",
            "reviewer_ids",
            "accepted_from",
            "accepted_until",
            "task_mix",
            "max_size",
            "seed",
            "benchmarks",
            "ngram_threshold",
            "use_embeddings",
            "embedding_model",
            "embedding_threshold",
            "near_dup_threshold",
            "item_count",
            "content_hash",
            "report",
            "files",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"url": {"type": "string", "format": "uri"}, "bytes": {"type": "integer"}},
            },
        }
    )
    def get_files(self, version: DatasetVersion) -> dict:
        request = self.context.get("request")
        return {
            key: {
                "url": reverse("dataset-version-download", args=[version.number, key], request=request),
                "bytes": entry.get("bytes"),
            }
            for key, entry in (version.report.get("files") or {}).items()
        }


class DatasetVersionRequestSerializer(serializers.Serializer):
    """What a new version takes (empty lists: no restriction), its task mix and its checks."""

    name = serializers.CharField(max_length=200, required=False, default="")
    note = serializers.CharField(required=False, default="", allow_blank=True)
    tasks = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        default=list,
        help_text=f"Task slugs: {', '.join(CodeTask.Slug.values)}.",
    )
    languages = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, default=list
    )
    job_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=params.ID_MAX), required=False, default=list
    )
    reviewer_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=params.ID_MAX), required=False, default=list
    )
    accepted_from = serializers.DateTimeField(required=False, allow_null=True, default=None)
    accepted_until = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Exclusive."
    )
    task_mix = serializers.JSONField(
        required=False,
        default=None,
        help_text='"codeocean", "generation=57,summarization=16,repair=16,translation=11", or '
        '{"generation": 0.57, …}; none: as accepted.',
    )
    max_size = serializers.IntegerField(
        min_value=1, max_value=params.DATASET_SIZE_MAX, required=False, allow_null=True, default=None
    )
    seed = serializers.IntegerField(min_value=0, max_value=params.SEED_MAX, required=False, default=0)
    benchmarks = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        default=None,
        help_text="Benchmark names (default: HumanEval); [] skips decontamination.",
    )
    ngram_threshold = serializers.FloatField(required=False, allow_null=True, default=None)
    use_embeddings = serializers.BooleanField(required=False, default=True)
    embedding_threshold = serializers.FloatField(required=False, allow_null=True, default=None)
    near_dup_threshold = serializers.FloatField(required=False, allow_null=True, default=None)

    def validate_task_mix(self, value: Any) -> str | dict | None:
        # Its shares are checked by create_version (DatasetError: "detail"); here only its shape.
        if value is not None and not isinstance(value, str | dict):
            raise serializers.ValidationError(
                "A preset name, task=share pairs or an object of shares per task."
            )
        return value

    def validate_benchmarks(self, names: list[str] | None) -> list[Benchmark] | None:
        if names is None:
            return None
        Benchmark.humaneval()
        found = {b.name: b for b in Benchmark.objects.filter(name__in=names)}
        missing = [name for name in names if name not in found]
        if missing:
            raise serializers.ValidationError(f"No benchmark named {', '.join(missing)}.")
        return [found[name] for name in names]

    def version_params(self) -> dict:
        """Keyword arguments for `training.datasets.start_version`."""
        data = dict(self.validated_data)
        filters = datasets.InstanceFilter(
            **{
                name: tuple(v) if isinstance(v := data.pop(name), list) else v
                for name in datasets.InstanceFilter._fields
            }
        )
        return {**data, "filters": filters}


class DatasetExclusionSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetExclusion
        fields = [
            "instance",
            "reason",
            "benchmark",
            "benchmark_item",
            "method",
            "score",
            "detail",
            "duplicate_of",
        ]


class BenchmarkSerializer(serializers.ModelSerializer):
    class Meta:
        model = Benchmark
        fields = ["id", "name", "kind", "item_count", "text_field", "code_field", "language", "created_at"]
        read_only_fields = fields


class BenchmarkUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    upload = serializers.FileField(help_text="JSONL: a problem statement and a reference solution per line.")
    text_field = serializers.CharField(max_length=100, required=False, default="")
    code_field = serializers.CharField(max_length=100, required=False, default="")
    language = serializers.CharField(max_length=40, required=False, default="")


class DatasetVersionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Dataset versions, by number: POST to create one (a worker builds it); GET to follow it; `download/
    <format>/` for a file; `exclusions/` for what decontamination and near-dedup left out."""

    queryset = DatasetVersion.objects.select_related("created_by").prefetch_related("benchmarks")
    serializer_class = DatasetVersionSerializer
    permission_classes = [IsCurator]
    parser_classes = params.API_PARSERS
    lookup_field = "number"
    lookup_value_regex = r"\d+"

    @extend_schema(request=DatasetVersionRequestSerializer, responses={201: DatasetVersionSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        params = DatasetVersionRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            version = datasets.start_version(user=request.user, **params.version_params())
        except datasets.DatasetError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(self.get_serializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "fmt", str, OpenApiParameter.PATH, enum=list(exports.FORMATS), description="Format."
            )
        ],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
            404: OpenApiResponse(description="Not built (yet), no such format, or its files are missing."),
        },
    )
    @action(detail=True, url_path=r"download/(?P<fmt>[a-z]+)", url_name="download")
    def download(self, request: Request, number=None, fmt: str = "") -> FileResponse:
        """One export file of a built version: alpaca, messages, parquet, hf (a zip) or card."""
        version = self.get_object()
        if version.status != DatasetVersion.Status.SUCCEEDED or fmt not in exports.FORMATS:
            raise Http404
        if not exports.export_path(version, fmt).exists():
            raise Http404
        return exports.download_response(version, fmt)

    @extend_schema(
        parameters=[OpenApiParameter("reason", str, enum=DatasetExclusion.Reason.values, required=False)],
        responses=DatasetExclusionSerializer(many=True),
    )
    @action(detail=True)
    def exclusions(self, request: Request, number=None) -> Response:
        """What the version left out and why (paginated): each benchmark match, each near duplicate."""
        rows = self.get_object().exclusions.order_by("reason", "-score", "id")
        if (reason := request.query_params.get("reason")) in DatasetExclusion.Reason.values:
            rows = rows.filter(reason=reason)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(DatasetExclusionSerializer(page, many=True).data)


class BenchmarkViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Benchmarks versions are checked against: HumanEval, and JSONL files curators upload (multipart)."""

    queryset = Benchmark.objects.order_by("kind", "name")
    serializer_class = BenchmarkSerializer
    permission_classes = [IsCurator]
    parser_classes = params.API_PARSERS

    def list(self, request: Request, *args, **kwargs) -> Response:
        Benchmark.humaneval()  # listed from the start, though its row is made on first use
        return super().list(request, *args, **kwargs)

    @extend_schema(request=BenchmarkUploadSerializer, responses={201: BenchmarkSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        params = BenchmarkUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            benchmark = datasets.add_benchmark(data.pop("upload"), user=request.user, **data)
        except BenchmarkFileError as exc:
            raise serializers.ValidationError({"upload": exc.errors})
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(BenchmarkSerializer(benchmark).data, status=status.HTTP_201_CREATED)
