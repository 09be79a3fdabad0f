from django.urls import path

from tokens import views

app_name = "tokens"
urlpatterns = [
    path("", views.token_list, name="list"),
    path("new/", views.token_create_view, name="create"),
    path("<int:token_id>/edit/", views.token_edit_view, name="edit"),
    path("<int:token_id>/regenerate/", views.token_regenerate_view, name="regenerate"),
    path("<int:token_id>/delete/", views.token_delete_view, name="delete"),
    path("revoked/delete/", views.token_delete_revoked_view, name="delete-revoked"),
]
