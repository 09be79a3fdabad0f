from django.urls import path

from tokens.api.ext import EmbedTokenView

urlpatterns = [
    path("users/personal-access-token", EmbedTokenView.as_view(), name="api-ext-embed-token"),
]
