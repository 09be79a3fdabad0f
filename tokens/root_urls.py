"""The tokens app's paths at the root of the service (``iam.urls`` includes them)."""

from django.urls import path

from tokens import embed_views
from tokens.api import gateway, oauth

urlpatterns = [
    path("auth/forward", gateway.ForwardAuthView.as_view(), name="gateway-forward"),
    path("oauth/token", oauth.TokenView.as_view(), name="oauth-token"),
    path("oauth/introspect", oauth.IntrospectView.as_view(), name="oauth-introspect"),
    path("oauth/revoke", oauth.RevokeView.as_view(), name="oauth-revoke"),
    path(".well-known/jwks.json", oauth.JWKSView.as_view(), name="jwks"),
    path(".well-known/oauth-authorization-server", oauth.MetadataView.as_view(), name="oauth-metadata"),
    path("embed-apps/<str:app_id>", embed_views.embed_app_open, name="embed-open"),
    path("embed-apps/<str:app_id>/frame", embed_views.embed_app_frame, name="embed-frame"),
    path("demo-app/", embed_views.demo_app, name="demo-app"),
    path("demo-app/api/whoami", embed_views.demo_app_whoami, name="demo-app-whoami"),
]
