from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from . import api_router

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include(api_router.urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("datasets/", include("training.urls")),
    path("training/", include("training.run_urls")),
    path("", include("curation.urls")),
]

# A bad query parameter answers its message in plain text (curation/params.py).
handler400 = "curation.params.bad_request"
