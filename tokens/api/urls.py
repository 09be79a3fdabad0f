from django.urls import path

from tokens.api.management import UserTokenDetailView, UserTokenListView
from tokens.api.views import LeakReportView, MeView

urlpatterns = [
    path("me", MeView.as_view(), name="api-me"),
    path("users/<int:userId>/personal-access-tokens", UserTokenListView.as_view(), name="api-user-tokens"),
    path(
        "users/<int:userId>/personal-access-tokens/<str:name>",
        UserTokenDetailView.as_view(),
        name="api-user-token",
    ),
    path("leaked-tokens", LeakReportView.as_view(), name="api-leaked-tokens"),
]
