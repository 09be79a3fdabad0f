from django.urls import path

from benchmarks.views import view_for

VARIANTS = ["none", "pat", "jwt", "drf_token", "knox", "api_key", "argon2"]
urlpatterns = [path(f"bench/{variant}", view_for(variant).as_view()) for variant in VARIANTS]
