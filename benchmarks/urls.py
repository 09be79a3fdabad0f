from django.urls import include, path

from benchmarks.views import view_for

VARIANTS = ["none", "pat", "jwt", "drf_token", "knox", "api_key", "argon2"]
# The trivial endpoint behind each authentication, then the product itself (for scale.py).
urlpatterns = [path(f"bench/{variant}", view_for(variant).as_view()) for variant in VARIANTS]
urlpatterns += [path("", include("iam.urls"))]
