"""All API endpoints in one router, under /api/."""

from rest_framework.routers import DefaultRouter

from curation import api as curation_api
from curation import principle_api
from training import api as training_api
from training import run_api

router = DefaultRouter()
router.register("samples", curation_api.CodeSampleViewSet, basename="sample")
router.register("ingest-runs", curation_api.IngestRunViewSet, basename="ingest-run")
router.register("selection-runs", curation_api.SelectionRunViewSet, basename="selection-run")
router.register("tasks", curation_api.CodeTaskViewSet, basename="task")
router.register("generation-jobs", curation_api.GenerationJobViewSet, basename="generation-job")
router.register("instances", curation_api.InstanceViewSet, basename="instance")
router.register("analytics", principle_api.AnalyticsViewSet, basename="analytics")
router.register("pool-examples", principle_api.PoolExampleViewSet, basename="pool-example")
router.register("refinement-runs", principle_api.RefinementRunViewSet, basename="refinement-run")
router.register("rejudge-jobs", principle_api.RejudgeJobViewSet, basename="rejudge-job")
router.register("dataset-versions", training_api.DatasetVersionViewSet, basename="dataset-version")
router.register("benchmarks", training_api.BenchmarkViewSet, basename="benchmark")
router.register("training-runs", run_api.TrainingRunViewSet, basename="training-run")
router.register("evaluation-runs", run_api.EvaluationRunViewSet, basename="evaluation-run")

urlpatterns = router.urls
