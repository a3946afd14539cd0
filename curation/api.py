"""REST API for the corpus and its jobs. Every endpoint needs a login and the curator role."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from . import launch
from .models import CodeSample, IngestRun, SelectionPick, SelectionRun
from .roles import IsCurator

_JOB_FIELDS = [
    "status",
    "phase",
    "progress_done",
    "progress_total",
    "error",
    "created_at",
    "started_at",
    "finished_at",
]


class CodeSampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = CodeSample
        fields = [
            "id",
            "source",
            "ingest_run",
            "language",
            "func_name",
            "repo",
            "path",
            "start_line",
            "end_line",
            "license",
            "n_chars",
            "docstring",
            "code",
            "content_hash",
            "created_at",
        ]


class IngestRunSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True)

    class Meta:
        model = IngestRun
        fields = ["id", "source", "source_name", "options", "report", "kept_count", *_JOB_FIELDS]
        read_only_fields = fields


class IngestRequestSerializer(serializers.Serializer):
    upload = serializers.FileField(required=False, help_text="Archive, JSONL or Parquet file.")
    path = serializers.CharField(required=False, help_text="Server folder or git checkout (allowed roots).")
    min_chars = serializers.IntegerField(min_value=1, default=settings.INGEST_MIN_CHARS)
    max_chars = serializers.IntegerField(min_value=1, default=settings.INGEST_MAX_CHARS)
    blacklist = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Words that drop a sample; [] turns the filter off.",
    )

    def validate(self, data: dict) -> dict:
        if bool(data.get("upload")) == bool(data.get("path")):
            raise serializers.ValidationError("Give either `upload` or `path`, not both.")
        return data


class SelectionRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = SelectionRun
        fields = [
            "id",
            "k",
            "seed",
            "model_name",
            "languages",
            "pool_size",
            "coverage_radius",
            "random_radius",
            "embedding_set",
            *_JOB_FIELDS,
        ]
        read_only_fields = ["pool_size", "coverage_radius", "random_radius", "embedding_set", *_JOB_FIELDS]
        extra_kwargs = {"model_name": {"required": False}, "seed": {"required": False}}


class SelectionPickSerializer(serializers.ModelSerializer):
    class Meta:
        model = SelectionPick
        fields = ["rank", "sample", "distance"]


class CodeSampleViewSet(viewsets.ReadOnlyModelViewSet):
    """The ingested corpus. Filter with `?language=` and `?source=`."""

    serializer_class = CodeSampleSerializer
    permission_classes = [IsCurator]

    def get_queryset(self):
        samples = CodeSample.objects.order_by("id")
        if language := self.request.query_params.get("language"):
            samples = samples.filter(language=language)
        if (source := self.request.query_params.get("source", "")).isdigit():
            samples = samples.filter(source_id=int(source))
        return samples


class IngestRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Ingest runs: POST an upload (multipart) or a server path to start one; GET to follow its report."""

    queryset = IngestRun.objects.select_related("source")
    serializer_class = IngestRunSerializer
    permission_classes = [IsCurator]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(request=IngestRequestSerializer, responses={201: IngestRunSerializer})
    def create(self, request, *args, **kwargs):
        params = IngestRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        options = {"min_chars": data["min_chars"], "max_chars": data["max_chars"]}
        if "blacklist" in data:
            options["blacklist"] = data["blacklist"]
        try:
            run = launch.start_ingest(
                user=request.user, upload=data.get("upload"), path=data.get("path", ""), options=options
            )
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(IngestRunSerializer(run).data, status=status.HTTP_201_CREATED)


class SelectionRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """KCenterGreedy selection runs: POST k, seed, model_name, languages; GET `picks/` for the choice."""

    queryset = SelectionRun.objects.all()
    serializer_class = SelectionRunSerializer
    permission_classes = [IsCurator]

    def create(self, request, *args, **kwargs):
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            run = launch.start_selection(
                user=request.user,
                k=data["k"],
                seed=data.get("seed", 0),
                model_name=data.get("model_name"),
                languages=data.get("languages", []),
            )
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=SelectionPickSerializer(many=True))
    @action(detail=True)
    def picks(self, request, pk=None):
        """The chosen samples in pick order (paginated)."""
        rows = self.get_object().pick_rows.order_by("rank")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SelectionPickSerializer(page, many=True).data)
