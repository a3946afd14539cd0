from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("ingest/", views.ingest_new, name="ingest-new"),
    path("ingest/<int:pk>/", views.ingest_detail, name="ingest-detail"),
    path("selection/", views.selection_new, name="selection-new"),
    path("selection/<int:pk>/", views.selection_detail, name="selection-detail"),
    path("corpus/", views.corpus, name="corpus"),
    path("corpus/<int:pk>/", views.sample_detail, name="sample-detail"),
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/<slug:slug>/", views.task_detail, name="task-detail"),
    path("generation/", views.generation_new, name="generation-new"),
    path("generation/<int:pk>/", views.generation_detail, name="generation-detail"),
    path(
        "generation/<int:pk>/<str:action>/",
        views.generation_control,
        name="generation-control",
    ),
    path("instances/", views.instance_list, name="instance-list"),
    path("instances/<int:pk>/", views.instance_detail, name="instance-detail"),
    path("review/", include("curation.review_urls")),
]
