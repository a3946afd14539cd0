from django.urls import path

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
]
