from django.urls import path

from . import views

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
    path("new/", views.dataset_new, name="dataset-new"),
    path("benchmarks/", views.benchmark_list, name="benchmark-list"),
    path("import/", views.import_new, name="import-new"),
    path("import/<int:pk>/", views.import_detail, name="import-detail"),
    path("v<int:number>/", views.dataset_detail, name="dataset-detail"),
    path("v<int:number>/download/<str:fmt>/", views.dataset_download, name="dataset-download"),
]
