"""The service's URLs. The apps' own are included by name (a string), so the
project's wiring imports no app above identity."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.errors import json_not_found
from iam.views import SignInView, handler403_view, handler404_view, handler500_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tokens:list", permanent=False)),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", include("tokens.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tokens.api.urls")),
    path("api/v1/", include("iam.api.urls")),
    path("api/ext/", include("tokens.api.ext_urls")),
    path("", include("tokens.root_urls")),  # OAuth, the JWKS and metadata, embedding, the demo app
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Our page template links Swagger UI's few page styles from static: CSP allows no inline <style>.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
    # Unknown API paths answer in the API's JSON shape, even with DEBUG on.
    re_path(r"^(api|oauth|\.well-known)/", json_not_found),
]

handler403 = handler403_view
handler404 = handler404_view
handler500 = handler500_view
