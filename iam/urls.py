from django.contrib import admin
from django.urls import include, path, re_path

from iam.exceptions import json_not_found
from iam.views import handler404_view, handler500_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("tokens.api.urls")),
    path("api/v1/", include("iam.api.urls")),
    # Unknown API paths answer in the API's JSON shape, even with DEBUG on.
    re_path(r"^(api|oauth)/", json_not_found),
]

handler404 = handler404_view
handler500 = handler500_view
