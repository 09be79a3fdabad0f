"""The administrator console: Django's admin, arranged as Thinkwise IAM arranges
its menus and open to the service's administrator kinds rather than to
Django's staff flag and model permissions.

Who sees what is decided on the server by ``AdminKindMixin`` (querysets and
permission checks), never by hiding links.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.urls import path, reverse

from iam.selectors import user_admin_kind

# (menu, [(app_label, object_name), ...]) in the order the console shows them.
MENUS = [
    (
        "Authorization",
        [
            ("tenants", "Tenant"),
            ("tenants", "Application"),
            ("tenants", "TenantApplication"),
            ("iam", "Role"),
            ("iam", "User"),
        ],
    ),
    (
        "Integrations",
        [
            ("tokens", "IntegrationCredential"),
            ("tokens", "OAuthClient"),
            ("tokens", "WebhookEndpoint"),
            ("tokens", "WebhookDelivery"),
        ],
    ),
    ("Analysis", [("tokens", "PersonalAccessToken"), ("iam", "AuditEvent")]),
]
# A menu entry named otherwise than its model's plural (the footer counts "35 audit events").
ENTRY_NAMES = {("iam", "AuditEvent"): "Audit trail"}


def entry_name(app_label: str, object_name: str) -> str | None:
    """The console's own name for a model's list, where it differs from the plural."""
    return ENTRY_NAMES.get((app_label, object_name))


def menu_of(app_label: str, object_name: str) -> str | None:
    """The title of the console's menu that lists the model, if one does."""
    return next((title for title, entries in MENUS if (app_label, object_name) in entries), None)


def audit_history_redirect(model_admin, request: HttpRequest, object_id: str, kind: str):
    """HISTORY on a token's, user's or tenant's page opens its events in the
    audit trail (Django's history page is empty: nothing here writes Django's
    LogEntry). Whoever may see these pages may read the trail (USER_ADMIN_KINDS)."""
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        raise Http404("No such object.")
    changelist = reverse("admin:iam_auditevent_changelist", current_app=model_admin.admin_site.name)
    return HttpResponseRedirect(f"{changelist}?about={kind}:{obj.pk}")


class IamAdminSite(admin.AdminSite):
    site_header = "IAM administration"
    site_title = "IAM administration"
    index_title = "Administration"
    site_url = "/tokens/"
    enable_nav_sidebar = True

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_authenticated and user_admin_kind(user))

    def login(self, request: HttpRequest, extra_context=None):
        """One sign-in page for the whole service; a signed-in user who is no
        administrator is refused rather than sent to sign in again."""
        if request.user.is_authenticated:
            raise PermissionDenied("The console is for administrators.")
        next_url = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        return HttpResponseRedirect(f"{reverse('login')}?{urlencode({'next': next_url})}")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pages: list = []

    def admin_kind(self, user) -> str | None:
        """The administrator kind of ``user`` ("main", "user", "application" or
        None): what the console's building blocks (``core.admin``) ask."""
        return user_admin_kind(user)

    def page_register(self, route: str, view, name: str) -> None:
        """Add a page of the console that belongs to no model (an app's
        ``admin.py`` registers it, as it registers its models)."""
        self._pages.append(path(route, self.admin_view(view), name=name))

    def get_urls(self):
        return [*self._pages, *super().get_urls()]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None):
        """Regroup the models into the console's menus."""
        models = {
            (app["app_label"], model["object_name"]): model
            for app in super().get_app_list(request, app_label)
            for model in app["models"]
        }
        menus = []
        for title, entries in MENUS:
            shown = [models[entry] for entry in entries if entry in models]
            for entry in entries:
                if entry in models and entry in ENTRY_NAMES:
                    models[entry]["name"] = ENTRY_NAMES[entry]
            if title == "Analysis" and user_admin_kind(request.user) in ("main", "user"):
                shown.append(
                    {
                        "name": "Approval requests",
                        "object_name": "ApprovalRequests",
                        "admin_url": reverse("admin:tokens_personalaccesstoken_changelist", current_app=self.name)
                        + "?status=pending",
                        "view_only": True,
                        "perms": {"view": True},
                    }
                )
                shown.append(
                    {
                        "name": "Dashboard",
                        "object_name": "Dashboard",
                        "admin_url": reverse("admin:dashboard", current_app=self.name),
                        "view_only": True,
                        "perms": {"view": True},
                    }
                )
            if shown:
                menus.append({"name": title, "app_label": title.lower(), "app_url": "", "models": shown})
        return menus
