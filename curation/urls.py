from django.urls import include, path

from . import principle_views, views

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
    path(
        "tasks/<slug:slug>/principles/<int:version>/adopt/",
        principle_views.principle_adopt,
        name="principle-adopt",
    ),
    path("analytics/", principle_views.analytics_page, name="analytics"),
    path("pools/", principle_views.pool_list, name="pool-list"),
    path("pools/<int:pk>/<str:action>/", principle_views.pool_action, name="pool-action"),
    path("refinement/", principle_views.refinement_list, name="refinement-list"),
    path("refinement/<int:pk>/", principle_views.refinement_detail, name="refinement-detail"),
    path("refinement/<int:pk>/<str:action>/", principle_views.refinement_action, name="refinement-action"),
    path("rejudge/", principle_views.rejudge_list, name="rejudge-list"),
    path("rejudge/<int:pk>/", principle_views.rejudge_detail, name="rejudge-detail"),
    path("rejudge/<int:pk>/cancel/", principle_views.rejudge_cancel, name="rejudge-cancel"),
    path("review/", include("curation.review_urls")),
]
