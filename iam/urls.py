from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from iam.exceptions import json_not_found
from iam.views import SignInView, handler404_view, handler500_view
from tokens import embed_views
from tokens.api import oauth
from tokens.api.urls import ext_urlpatterns

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tokens:list", permanent=False)),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", include("tokens.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tokens.api.urls")),
    path("api/v1/", include("iam.api.urls")),
    path("api/ext/", include(ext_urlpatterns)),
    path("oauth/token", oauth.TokenView.as_view(), name="oauth-token"),
    path("oauth/introspect", oauth.IntrospectView.as_view(), name="oauth-introspect"),
    path("oauth/revoke", oauth.RevokeView.as_view(), name="oauth-revoke"),
    path(".well-known/jwks.json", oauth.JWKSView.as_view(), name="jwks"),
    path(".well-known/oauth-authorization-server", oauth.MetadataView.as_view(), name="oauth-metadata"),
    path("embed-apps/<str:app_id>", embed_views.embed_app_open, name="embed-open"),
    path("embed-apps/<str:app_id>/frame", embed_views.embed_app_frame, name="embed-frame"),
    path("demo-app/", embed_views.demo_app, name="demo-app"),
    path("demo-app/api/whoami", embed_views.demo_app_whoami, name="demo-app-whoami"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Unknown API paths answer in the API's JSON shape, even with DEBUG on.
    re_path(r"^(api|oauth|\.well-known)/", json_not_found),
]

handler404 = handler404_view
handler500 = handler500_view
