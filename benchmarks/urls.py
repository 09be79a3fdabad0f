from django.contrib import admin
from django.urls import include, path
from knox.models import AuthToken
from rest_framework.authtoken.models import TokenProxy
from rest_framework_api_key.models import APIKey

from benchmarks.views import view_for

VARIANTS = ["none", "pat", "pat_networks", "jwt", "drf_token", "knox", "api_key", "argon2"]
# The trivial endpoint behind each authentication, then the product itself (for scale.py).
urlpatterns = [path(f"bench/{variant}", view_for(variant).as_view()) for variant in VARIANTS]
urlpatterns += [path("", include("iam.urls"))]
# The peers are installed for the benchmark only: keep their admin pages out of
# the product's console, whose menus scale.py times.
for peer in (TokenProxy, AuthToken, APIKey):
    admin.site.unregister(peer)
