"""REST API for the human-in-the-loop side: agreement analytics, example pools, refinement runs and
re-judging jobs. Curators only, like the pages (curation/principle_views.py), calling the same code."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from . import analytics, launch, pools, refinement
from .api import JOB_FIELDS, RuleSerializer
from .models import CodeTask, PoolExample, RefinementRun, RejudgeJob
from .params import (
    API_PARSERS,
    REFINEMENT_CASES_MAX,
    REFINEMENT_HELDOUT_FRACTION,
    REFINEMENT_HELDOUT_MAX,
    SEED_MAX,
    TextSlugRelatedField,
    text_param,
)
from .roles import IsCurator


def _bad_request(exc: Exception):
    return serializers.ValidationError({"detail": str(exc)})


class _StartViaLaunch(mixins.CreateModelMixin):
    """POST creates the row through `start` (a curation.launch function) so that it is queued, and
    answers 400 with the reason when the request cannot be started."""

    start = None

    def create(self, request, *args, **kwargs):
        params = self.get_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            row = type(self).start(user=request.user, **params.validated_data)
        except refinement.RefinementError as exc:
            raise _bad_request(exc) from exc
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)


class AnalyticsViewSet(viewsets.ViewSet):
    """Discriminator-vs-human agreement per task: confusion matrix, kappa, per-rule precision and
    recall as predictors of rejection, false rejections/acceptances per rule with cases, trend per
    principle version."""

    permission_classes = [IsCurator]

    @extend_schema(
        parameters=[OpenApiParameter("task", str, description="A task slug (default: every task)")],
        responses={200: OpenApiTypes.OBJECT},
    )
    def list(self, request):
        try:
            items = analytics.all_analytics(text_param(request.query_params, "task"))
        except ValueError as exc:
            raise _bad_request(exc) from exc
        return Response(
            {"overall": analytics.confusion_for().as_dict(), "tasks": [item.as_dict() for item in items]}
        )


class PoolExampleSerializer(serializers.ModelSerializer):
    task = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = PoolExample
        fields = [
            "id",
            "task",
            "kind",
            "origin",
            "instance",
            "language",
            "target_language",
            "instruction",
            "input",
            "output",
            "explanation",
            "tests",
            "reasons",
            "pinned",
            "removed",
            "created_at",
        ]
        read_only_fields = fields


class PoolExampleViewSet(viewsets.ReadOnlyModelViewSet):
    """Good and bad few-shot examples; filter with `task`, `kind`, `origin`, `removed=1`. POST
    `pin/`, `unpin/`, `remove/`, `restore/` to manage one."""

    serializer_class = PoolExampleSerializer
    permission_classes = [IsCurator]

    def get_queryset(self):
        qs = PoolExample.objects.select_related("task").order_by("-pinned", "-created_at")
        params = self.request.query_params
        if task := text_param(params, "task"):
            qs = qs.filter(task__slug=task)
        if (kind := params.get("kind")) in PoolExample.Kind.values:
            qs = qs.filter(kind=kind)
        if (origin := params.get("origin")) in PoolExample.Origin.values:
            qs = qs.filter(origin=origin)
        if self.action == "list":
            qs = qs.filter(removed=params.get("removed") == "1")
        return qs

    def _set(self, **change) -> Response:
        example = self.get_object()
        if "pinned" in change:
            pools.set_pinned(example, change["pinned"])
        else:
            pools.set_removed(example, change["removed"])
        return Response(self.get_serializer(example).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pin(self, request, pk=None):
        return self._set(pinned=True)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def unpin(self, request, pk=None):
        return self._set(pinned=False)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def remove(self, request, pk=None):
        return self._set(removed=True)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def restore(self, request, pk=None):
        return self._set(removed=False)


class RefinementRunSerializer(serializers.ModelSerializer):
    task = TextSlugRelatedField(slug_field="slug", queryset=CodeTask.objects.all())
    base_version = serializers.IntegerField(source="base_version.version", read_only=True)
    proposed_version = serializers.IntegerField(
        source="proposed_version.version", read_only=True, default=None
    )

    class Meta:
        model = RefinementRun
        fields = [
            "id",
            "task",
            "stage",
            "base_version",
            "proposed_version",
            "model",
            "heldout_fraction",
            "max_cases",
            "max_heldout",
            "seed",
            "case_ids",
            "heldout_ids",
            "proposed_rules",
            "changes",
            "summary",
            "edited",
            "check_results",
            "raw_response",
            *JOB_FIELDS,
        ]
        read_only_fields = [
            "stage",
            "case_ids",
            "heldout_ids",
            "proposed_rules",
            "changes",
            "summary",
            "edited",
            "check_results",
            "raw_response",
            *JOB_FIELDS,
        ]
        extra_kwargs = {
            "model": {"required": False},
            "heldout_fraction": {
                "required": False,
                "min_value": REFINEMENT_HELDOUT_FRACTION[0],
                "max_value": REFINEMENT_HELDOUT_FRACTION[1],
            },
            "max_cases": {"required": False, "min_value": 1, "max_value": REFINEMENT_CASES_MAX},
            "max_heldout": {"required": False, "min_value": 1, "max_value": REFINEMENT_HELDOUT_MAX},
            "seed": {"required": False, "min_value": 0, "max_value": SEED_MAX},
        }


class RefinementRunViewSet(_StartViaLaunch, viewsets.ReadOnlyModelViewSet):
    """Refinement runs. POST to start one for a task (the LLM proposes); then POST `edit/` (rules),
    `check/` (held-out check), `adopt/` or `discard/`."""

    queryset = RefinementRun.objects.select_related("task", "base_version", "proposed_version")
    serializer_class = RefinementRunSerializer
    permission_classes = [IsCurator]
    parser_classes = API_PARSERS
    start = staticmethod(launch.start_refinement)

    def _do(self, fn, *args) -> Response:
        try:
            fn(self.get_object(), *args, user=self.request.user)
        except (refinement.RefinementError, ValueError) as exc:
            raise _bad_request(exc) from exc
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=RuleSerializer(many=True))
    @action(detail=True, methods=["post"])
    def edit(self, request, pk=None):
        """Replace the proposed rules: a list of {id, question}."""
        rules = RuleSerializer(data=request.data, many=True)
        rules.is_valid(raise_exception=True)
        return self._do(refinement.edit_proposal, [dict(r) for r in rules.validated_data])

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        return self._do(launch.start_check)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def adopt(self, request, pk=None):
        return self._do(refinement.adopt)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def discard(self, request, pk=None):
        return self._do(refinement.discard)


class RejudgeJobSerializer(serializers.ModelSerializer):
    tasks = serializers.ListField(child=serializers.ChoiceField(CodeTask.Slug.choices), required=False)

    class Meta:
        model = RejudgeJob
        fields = ["id", "tasks", "model", "only_outdated", "concurrency", "changed", "failed", *JOB_FIELDS]
        read_only_fields = ["changed", "failed", *JOB_FIELDS]
        extra_kwargs = {
            "model": {"required": False},
            "concurrency": {"required": False, "min_value": 1, "max_value": settings.LLM_CONCURRENCY},
        }


class RejudgeJobViewSet(_StartViaLaunch, viewsets.ReadOnlyModelViewSet):
    """Re-run the discriminator on unreviewed instances with each task's current principles; POST
    `cancel/` to stop one."""

    queryset = RejudgeJob.objects.all()
    serializer_class = RejudgeJobSerializer
    permission_classes = [IsCurator]
    parser_classes = API_PARSERS
    start = staticmethod(launch.start_rejudge)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not refinement.cancel_rejudge(job):
            raise _bad_request(ValueError("The job already finished."))
        job.refresh_from_db()
        return Response(self.get_serializer(job).data)
