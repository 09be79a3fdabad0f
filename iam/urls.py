from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from iam.exceptions import json_not_found
from iam.views import SignInView, handler404_view, handler500_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tokens:list", permanent=False)),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", include("tokens.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tokens.api.urls")),
    path("api/v1/", include("iam.api.urls")),
    # Unknown API paths answer in the API's JSON shape, even with DEBUG on.
    re_path(r"^(api|oauth)/", json_not_found),
]

handler404 = handler404_view
handler500 = handler500_view
