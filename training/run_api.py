"""REST API for training and evaluation runs: curators read them, admins create, cancel and resume them.
The checks and the work are `training.runs`'; a bad request gets every problem at once."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from curation.api import JOB_FIELDS
from curation.params import API_PARSERS
from curation.roles import IsAdmin, IsCurator
from training import runs
from training.model_eval import PROMPT_STYLES
from training.models import DatasetVersion, EvaluationRun, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    dataset_version = serializers.SlugRelatedField(
        slug_field="number", queryset=DatasetVersion.objects.all(), help_text="The version's number."
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    loss_points = serializers.SerializerMethodField(
        help_text="[step, loss] pairs from metrics.jsonl; in a single run's answer only, not in the list."
    )

    class Meta:
        model = TrainingRun
        read_only_fields = [
            "id",
            *JOB_FIELDS,
            "output_dir",
            "last_step",
            "total_steps",
            "last_epoch",
            "first_loss",
            "last_loss",
            "last_lr",
            "tokens_per_s",
            "eta_s",
            "heartbeat_at",
            "worker_host",
            "cancel_requested",
            "resumed_count",
            "resumed_from_step",
            "final_model_path",
            "error_kind",
            "result",
            "created_by",
            "loss_points",
        ]
        fields = ["dataset_version", "base_model", "method", *runs.HYPERPARAMETERS, *read_only_fields]
        extra_kwargs = {
            "base_model": {"required": False},
            **{name: {"min_value": lo, "max_value": hi} for name, (lo, hi) in runs.INTEGER_RANGES.items()},
        }

    def get_fields(self):
        fields = super().get_fields()
        view = self.context.get("view")
        if getattr(view, "action", None) == "list":  # a page of runs reads no metrics files
            fields.pop("loss_points")
        return fields

    def get_loss_points(self, run: TrainingRun) -> list[list[float]]:
        return [[step, loss] for step, loss in runs.loss_points(run)]


class EvaluationRunSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    comparison = serializers.SerializerMethodField(
        help_text="Base against tuned per problem, once both finished (tuned runs of a comparison only)."
    )

    class Meta:
        model = EvaluationRun
        fields = [
            "id",
            "model",
            "label",
            "training_run",
            "role",
            "compare_with",
            "benchmark",
            "limit",
            "task_ids",
            "n",
            "prompt_style",
            "max_new_tokens",
            "pass_at_1",
            "pass_at_k",
            "results",
            *JOB_FIELDS,
            "created_by",
            "comparison",
        ]
        read_only_fields = fields

    def get_comparison(self, evaluation: EvaluationRun) -> dict | None:
        return runs.comparison(evaluation)


class EvaluationRequestSerializer(serializers.Serializer):
    """One model (`model`), or base against tuned of a finished training run (`training_run`)."""

    training_run = serializers.PrimaryKeyRelatedField(
        queryset=TrainingRun.objects.all(), required=False, allow_null=True, default=None
    )
    model = serializers.CharField(max_length=1000, required=False, default="")
    label = serializers.CharField(max_length=200, required=False, default="")
    limit = serializers.IntegerField(
        min_value=1, max_value=164, required=False, allow_null=True, default=None
    )
    task_ids = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    n = serializers.IntegerField(min_value=1, max_value=200, required=False, default=1)
    max_new_tokens = serializers.IntegerField(min_value=8, max_value=4096, required=False, default=512)
    prompt_style = serializers.ChoiceField(choices=PROMPT_STYLES, required=False, default="completion")

    def validate(self, data: dict) -> dict:
        if not data["training_run"] and not data["model"]:
            raise serializers.ValidationError("Give a training_run to compare, or a model.")
        return data


class RunActionSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What happened, for people.")


class _AdminWrites:
    """Reading needs the curator role; creating and acting on runs, the admin role."""

    def get_permissions(self):
        return [IsCurator()] if self.action in ("list", "retrieve") else [IsAdmin()]


class TrainingRunViewSet(_AdminWrites, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Fine-tuning runs: POST one (checked, then queued on the gpu queue); `cancel/` and `resume/`."""

    queryset = TrainingRun.objects.select_related("dataset_version", "created_by")
    serializer_class = TrainingRunSerializer
    parser_classes = API_PARSERS

    def create(self, request: Request, *args, **kwargs) -> Response:
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            run = runs.start_training(user=request.user, **params.validated_data)
        except runs.RunError as exc:
            raise serializers.ValidationError({"errors": exc.errors})
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=RunActionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        """Stop the run after its current step (with a checkpoint); a queued run is cancelled at once."""
        return Response({"detail": runs.request_cancel(self.get_object())})

    @extend_schema(request=None, responses=RunActionSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk=None) -> Response:
        """Queue a failed, cancelled or orphaned run again; it continues from its newest checkpoint."""
        try:
            return Response({"detail": runs.resume_training(self.get_object())})
        except runs.RunError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


class EvaluationRunViewSet(_AdminWrites, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """HumanEval evaluations: POST a model, or a training run to compare its base and tuned models (the
    answer is then the tuned model's evaluation, whose `compare_with` is the base's)."""

    queryset = EvaluationRun.objects.select_related("training_run", "compare_with", "created_by")
    serializer_class = EvaluationRunSerializer
    parser_classes = API_PARSERS

    @extend_schema(request=EvaluationRequestSerializer, responses={201: EvaluationRunSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        params = EvaluationRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        run = data.pop("training_run")
        try:
            if run is not None:
                data.pop("model"), data.pop("label")
                _, evaluation = runs.start_comparison(run, user=request.user, **data)
            else:
                evaluation = runs.start_evaluation(user=request.user, **data)
        except runs.RunError as exc:
            raise serializers.ValidationError({"errors": exc.errors})
        return Response(self.get_serializer(evaluation).data, status=status.HTTP_201_CREATED)
