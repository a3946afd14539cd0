"""REST API for the corpus and its jobs. Every endpoint needs a login and the curator role."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from . import catalog, generation, launch, refinement
from .models import (
    CodeSample,
    CodeTask,
    GenerationJob,
    IngestRun,
    Instance,
    PrincipleVersion,
    RuleVerdict,
    SelectionPick,
    SelectionRun,
    TaskPromptVersion,
    Verdict,
)
from .params import (
    API_PARSERS,
    CONCURRENCY_MAX,
    FEW_SHOT_MAX,
    INGEST_CHARS_MAX,
    INSTANCES_PER_SAMPLE_MAX,
    SAMPLES_PER_TASK_MAX,
    SEED_MAX,
    SELECTION_K_MAX,
    TRIES_MAX,
    int_param,
    text_param,
)
from .roles import IsCurator

JOB_FIELDS = [
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
        fields = ["id", "source", "source_name", "options", "report", "kept_count", *JOB_FIELDS]
        read_only_fields = fields


class IngestRequestSerializer(serializers.Serializer):
    upload = serializers.FileField(required=False, help_text="Archive, JSONL or Parquet file.")
    path = serializers.CharField(
        required=False, max_length=1000, help_text="Server folder or git checkout (allowed roots)."
    )
    min_chars = serializers.IntegerField(
        min_value=1, max_value=INGEST_CHARS_MAX, default=settings.INGEST_MIN_CHARS
    )
    max_chars = serializers.IntegerField(
        min_value=1, max_value=INGEST_CHARS_MAX, default=settings.INGEST_MAX_CHARS
    )
    blacklist = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Words that drop a sample; [] turns the filter off.",
    )

    def validate(self, data: dict) -> dict:
        if bool(data.get("upload")) == bool(data.get("path")):
            raise serializers.ValidationError("Give either `upload` or `path`, not both.")
        if data["min_chars"] >= data["max_chars"]:
            raise serializers.ValidationError({"max_chars": "Must be larger than min_chars."})
        return data


class SelectionRunSerializer(serializers.ModelSerializer):
    languages = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, help_text="Only these; none: all."
    )

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
            *JOB_FIELDS,
        ]
        read_only_fields = ["pool_size", "coverage_radius", "random_radius", "embedding_set", *JOB_FIELDS]
        extra_kwargs = {
            "model_name": {"required": False},
            "k": {"min_value": 1, "max_value": SELECTION_K_MAX},
            "seed": {"required": False, "min_value": 0, "max_value": SEED_MAX},
        }


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
        params = self.request.query_params
        if language := text_param(params, "language"):
            samples = samples.filter(language=language)
        if (source := int_param(params, "source")) is not None:
            samples = samples.filter(source_id=source)
        return samples


class IngestRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Ingest runs: POST an upload (multipart) or a server path to start one; GET to follow its report."""

    queryset = IngestRun.objects.select_related("source")
    serializer_class = IngestRunSerializer
    permission_classes = [IsCurator]
    parser_classes = API_PARSERS

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
    parser_classes = API_PARSERS

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


# --- Stage 2 --------------------------------------------------------------------------------------


class PromptVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskPromptVersion
        fields = ["id", "version", "definition", "requirements", "note", "created_at"]
        read_only_fields = ["id", "version", "created_at"]


class RuleSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    question = serializers.CharField()


class PrincipleVersionSerializer(serializers.ModelSerializer):
    rules = RuleSerializer(many=True, allow_empty=False, help_text="The rules, in order.")

    class Meta:
        model = PrincipleVersion
        fields = ["id", "version", "rules", "note", "created_at"]
        read_only_fields = ["id", "version", "created_at"]


class CodeTaskSerializer(serializers.ModelSerializer):
    current_prompt = PromptVersionSerializer(read_only=True)
    current_principles = PrincipleVersionSerializer(read_only=True)

    class Meta:
        model = CodeTask
        fields = ["slug", "name", "current_prompt", "current_principles"]


class CodeTaskViewSet(viewsets.ReadOnlyModelViewSet):
    """The four tasks with their current prompt and principles; POST new versions to edit them."""

    queryset = CodeTask.objects.select_related("current_prompt", "current_principles")
    serializer_class = CodeTaskSerializer
    permission_classes = [IsCurator]
    parser_classes = API_PARSERS
    lookup_field = "slug"

    @extend_schema(request=PromptVersionSerializer, responses={201: PromptVersionSerializer})
    @action(detail=True, methods=["post"], url_path="prompt-versions")
    def prompt_versions(self, request, slug=None):
        """Save a new prompt version (definition + requirements) and make it current."""
        params = PromptVersionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            version = catalog.new_prompt_version(
                self.get_object(), user=request.user, **params.validated_data
            )
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(PromptVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PrincipleVersionSerializer, responses={201: PrincipleVersionSerializer})
    @action(detail=True, methods=["post"], url_path="principle-versions")
    def principle_versions(self, request, slug=None):
        """Save a new principle version (a list of {id, question}) and make it current."""
        body = PrincipleVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rules = [dict(rule) for rule in body.validated_data["rules"]]
        try:
            version = catalog.new_principle_version(
                self.get_object(), rules=rules, user=request.user, note=body.validated_data.get("note", "")
            )
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(PrincipleVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: PrincipleVersionSerializer})
    @action(detail=True, methods=["post"], url_path=r"principle-versions/(?P<version>\d+)/adopt")
    def adopt_principles(self, request, slug=None, version=None):
        """Make any version of the task's principles current: adoption or rollback in one call."""
        task = self.get_object()
        principle_version = task.principle_versions.filter(version=int(version)).first()
        if principle_version is None:
            raise serializers.ValidationError({"detail": f"{task.name} has no principles v{version}."})
        refinement.adopt_version(principle_version, user=request.user)
        return Response(PrincipleVersionSerializer(principle_version).data)


class GenerationJobSerializer(serializers.ModelSerializer):
    # Which slugs: create_generation_job says ("Tasks must be some of …"); here only a list of strings.
    tasks = serializers.ListField(child=serializers.CharField(max_length=32), help_text="Task slugs.")
    counts = serializers.SerializerMethodField()
    estimated_cost_usd = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "selection_run",
            "tasks",
            "samples_per_task",
            "instances_per_sample",
            "generator_model",
            "discriminator_model",
            "concurrency",
            "execute",
            "few_shot",
            "tries",
            "paused",
            "prompt_tokens",
            "completion_tokens",
            "counts",
            "estimated_cost_usd",
            *JOB_FIELDS,
        ]
        read_only_fields = ["paused", "prompt_tokens", "completion_tokens", *JOB_FIELDS]
        extra_kwargs = {
            "generator_model": {"required": False},
            "discriminator_model": {"required": False},
            "samples_per_task": {"min_value": 1, "max_value": SAMPLES_PER_TASK_MAX},
            "instances_per_sample": {"min_value": 1, "max_value": INSTANCES_PER_SAMPLE_MAX},
            "concurrency": {"required": False, "min_value": 1, "max_value": CONCURRENCY_MAX},
            "few_shot": {"min_value": 0, "max_value": FEW_SHOT_MAX},
            "tries": {"required": False, "min_value": 1, "max_value": TRIES_MAX},
        }

    def get_counts(self, job) -> dict:
        return vars(generation.job_counts(job))

    def get_estimated_cost_usd(self, job) -> float | None:
        return generation.job_cost(job)


class GenerationJobViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Generation jobs: POST to start one; `pause/`, `resume/`, `cancel/`, `retry/` to control it."""

    queryset = GenerationJob.objects.all()
    serializer_class = GenerationJobSerializer
    permission_classes = [IsCurator]
    parser_classes = API_PARSERS

    def create(self, request, *args, **kwargs):
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        try:
            job = launch.start_generation(user=request.user, **data)
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    def _control(self, action_name: str) -> Response:
        job = self.get_object()
        try:
            message = launch.control_generation(job, action_name)
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)})
        job.refresh_from_db()
        return Response({"detail": message, "job": self.get_serializer(job).data})

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._control("pause")

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._control("resume")

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._control("cancel")

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        return self._control("retry")


class RuleVerdictSerializer(serializers.ModelSerializer):
    class Meta:
        model = RuleVerdict
        fields = ["rule_id", "question", "passed", "reason"]


class VerdictSerializer(serializers.ModelSerializer):
    rules = RuleVerdictSerializer(many=True, read_only=True)
    principle_version = serializers.IntegerField(source="principle_version.version", read_only=True)

    class Meta:
        model = Verdict
        fields = ["id", "model", "passed", "reasons", "principle_version", "rules", "created_at"]


class InstanceSerializer(serializers.ModelSerializer):
    task = serializers.CharField(source="task.slug", read_only=True)
    prompt_version = serializers.IntegerField(source="prompt_version.version", read_only=True)
    verdict = VerdictSerializer(read_only=True)

    class Meta:
        model = Instance
        fields = [
            "id",
            "job",
            "sample",
            "task",
            "prompt_version",
            "generator_model",
            "sample_index",
            "status",
            "stage",
            "failure",
            "language",
            "target_language",
            "instruction",
            "input",
            "output",
            "explanation",
            "tests",
            "checks",
            "failed_check",
            "execution_status",
            "execution_detail",
            "passed",
            "verdict",
            "created_at",
            "finished_at",
        ]


class InstanceViewSet(viewsets.ReadOnlyModelViewSet):
    """Generated instances with their checks and verdicts. Filters: job, task, status, passed."""

    serializer_class = InstanceSerializer
    permission_classes = [IsCurator]

    def get_queryset(self):
        rows = Instance.objects.select_related("task", "prompt_version", "verdict__principle_version")
        rows = rows.prefetch_related("verdict__rules").order_by("id")
        params = self.request.query_params
        if (job := int_param(params, "job")) is not None:
            rows = rows.filter(job_id=job)
        if task := text_param(params, "task"):
            rows = rows.filter(task__slug=task)
        if status := text_param(params, "status"):
            rows = rows.filter(status=status)
        if params.get("passed") in ("true", "false"):
            rows = rows.filter(passed=params["passed"] == "true")
        return rows
