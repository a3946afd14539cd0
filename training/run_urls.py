from django.urls import path

from . import run_views

urlpatterns = [
    path("", run_views.run_list, name="training-run-list"),
    path("new/", run_views.run_new, name="training-run-new"),
    path("<int:pk>/", run_views.run_detail, name="training-run-detail"),
    path("<int:pk>/cancel/", run_views.run_cancel, name="training-run-cancel"),
    path("<int:pk>/resume/", run_views.run_resume, name="training-run-resume"),
    path("evaluations/", run_views.evaluation_list, name="evaluation-list"),
    path("evaluations/new/", run_views.evaluation_new, name="evaluation-new"),
    path("evaluations/<int:pk>/", run_views.evaluation_detail, name="evaluation-detail"),
]
