from django.urls import path

from tokens.api.management import UserTokenDetailView, UserTokenListView, UserTokenRotateView
from tokens.api.views import LeakReportView, MeView, SelfRotateView

urlpatterns = [
    path("me", MeView.as_view(), name="api-me"),
    path("users/<int:userId>/personal-access-tokens", UserTokenListView.as_view(), name="api-user-tokens"),
    path(
        "users/<int:userId>/personal-access-tokens/<str:name>",
        UserTokenDetailView.as_view(),
        name="api-user-token",
    ),
    path(
        "users/<int:userId>/personal-access-tokens/<str:name>/rotate",
        UserTokenRotateView.as_view(),
        name="api-user-token-rotate",
    ),
    path("tokens/self/rotate", SelfRotateView.as_view(), name="api-token-self-rotate"),
    path("leaked-tokens", LeakReportView.as_view(), name="api-leaked-tokens"),
]
