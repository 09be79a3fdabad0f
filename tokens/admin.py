"""Analysis > Personal access tokens, and the dashboard.

Administrators never create or edit tokens (Thinkwise): the overview is
read-only; its one action is revocation, irreversible, behind a confirmation.
"""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from iam.admin_base import CappedCountPaginator, ReadOnlyAdmin
from iam.exceptions import DomainError
from iam.http import client_ip
from iam.selectors import user_admin_kind, user_is_main_administrator
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.rules import EffectiveStatus
from tokens.selectors import dashboard_figures, tokens_visible_to_admin, with_effective_status
from tokens.services import token_revoke

TOKEN_ADMIN_KINDS = frozenset({"main", "user"})
STATUS_CHOICES = [
    (EffectiveStatus.ACTIVE, "Active"),
    (EffectiveStatus.EXPIRED, "Expired"),
    (EffectiveStatus.INACTIVE, "Inactive"),
    (EffectiveStatus.REVOKED, "Revoked"),
    (EffectiveStatus.DELETED, "Deleted"),
]


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return STATUS_CHOICES

    def queryset(self, request, queryset):
        if self.value() in dict(STATUS_CHOICES):
            return queryset.filter(effective_status=self.value())
        return queryset


class ExpiringFilter(admin.SimpleListFilter):
    title = "expiring"
    parameter_name = "expiring"

    def lookups(self, request, model_admin):
        return [("7", "within 7 days"), ("30", "within 30 days")]

    def queryset(self, request, queryset):
        if self.value() in ("7", "30"):
            now = timezone.now()
            return queryset.filter(
                status=TokenStatus.ACTIVE, expires_at__gt=now, expires_at__lte=now + timedelta(days=int(self.value()))
            )
        return queryset


class UseFilter(admin.SimpleListFilter):
    title = "use"
    parameter_name = "use"

    def lookups(self, request, model_admin):
        return [("never", "never used"), ("stale", "not used for 90 days")]

    def queryset(self, request, queryset):
        cutoff = timezone.now() - timedelta(days=90)
        if self.value() == "never":
            return queryset.filter(last_used_at__isnull=True)
        if self.value() == "stale":
            return queryset.filter(last_used_at__lt=cutoff) | queryset.filter(
                last_used_at__isnull=True, created_at__lt=cutoff
            )
        return queryset


class TenantFilter(admin.RelatedFieldListFilter):
    """Only main administrators choose among tenants; others see their own."""


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(ReadOnlyAdmin):
    view_kinds = TOKEN_ADMIN_KINDS
    list_display = [
        "name",
        "owner",
        "tenant",
        "application_name",
        "permission_list",
        "status_badge",
        "created_at",
        "expires_at",
        "last_used",
    ]
    list_filter = [StatusFilter, "tenant", "application", ExpiringFilter, UseFilter]
    search_fields = ["owner__username", "owner__email", "name", "^display_prefix"]
    list_select_related = ["owner", "tenant", "application"]
    ordering = ["-created_at", "-id"]
    sortable_by = ["name", "created_at", "expires_at", "last_used", "owner", "tenant"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    actions = ["revoke_selected"]
    fields = [
        "name",
        "owner",
        "tenant",
        "application",
        "permission_list",
        "status_badge",
        "display_prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
        "revoked_by",
        "deleted_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/tokens/personalaccesstoken/change_form.html"

    def get_queryset(self, request):
        tokens = tokens_visible_to_admin(request.user).prefetch_related("roles")
        return with_effective_status(tokens)

    def get_list_filter(self, request):
        if user_is_main_administrator(request.user):
            return self.list_filter
        return [f for f in self.list_filter if f != "tenant"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="application", ordering="application__name")
    def application_name(self, token: PersonalAccessToken) -> str:
        return token.application.name if token.application else "(administrative)"

    @admin.display(description="permissions")
    def permission_list(self, token: PersonalAccessToken) -> str:
        return ", ".join(role.name for role in token.roles.all())

    @admin.display(description="status", ordering="effective_status")
    def status_badge(self, token: PersonalAccessToken):
        status = getattr(token, "effective_status", token.status)
        return format_html('<span class="token-status token-status-{}">{}</span>', status, status)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, token: PersonalAccessToken) -> str:
        if token.last_used_at is None:
            return "never"
        return f"{timezone.localtime(token.last_used_at):%Y-%m-%d %H:%M} from {token.last_used_ip or '?'}"

    # ------------------------------------------------------------ revocation

    def get_urls(self):
        return [
            path(
                "<int:token_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="tokens_personalaccesstoken_revoke",
            ),
            *super().get_urls(),
        ]

    def _revoke(self, request: HttpRequest, tokens: list[PersonalAccessToken]) -> int:
        revoked = 0
        for token in tokens:
            try:
                token_revoke(
                    token=token, actor=request.user, ip=client_ip(request), reason=request.POST.get("reason", "")
                )
            except DomainError as error:
                messages.error(request, f"{token.name}: {error.message}")
            else:
                revoked += 1
        return revoked

    def _confirmation(self, request: HttpRequest, tokens: list[PersonalAccessToken], **extra) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke personal access tokens",
            "tokens": tokens,
            "opts": self.model._meta,
            **extra,
        }
        return TemplateResponse(request, "admin/tokens/revoke_confirmation.html", context)

    def revoke_view(self, request: HttpRequest, token_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        token = self.get_queryset(request).filter(pk=token_id).first()
        if token is None:
            raise Http404("No such token.")
        if request.method == "POST":
            if self._revoke(request, [token]):
                messages.success(request, f"Token “{token.name}” revoked. Its owner has been told.")
            return HttpResponseRedirect(reverse("admin:tokens_personalaccesstoken_change", args=[token.pk]))
        return self._confirmation(request, [token], single=True)

    @admin.action(description="Revoke selected personal access tokens")
    def revoke_selected(self, request: HttpRequest, queryset):
        tokens = list(queryset.exclude(status__in=[TokenStatus.REVOKED, TokenStatus.DELETED]))
        if request.POST.get("post") == "yes":
            count = self._revoke(request, tokens)
            messages.success(request, f"{count} token(s) revoked. Their owners have been told.")
            return None
        if not tokens:
            messages.info(request, "None of the selected tokens can be revoked: they are revoked or deleted already.")
            return None
        return self._confirmation(request, tokens, bulk=True)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_revoke": True}
        return super().change_view(request, object_id, form_url, extra_context)


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Analysis > Dashboard: pictures of the tokens the administrator may see."""
    if user_admin_kind(request.user) not in TOKEN_ADMIN_KINDS:
        raise PermissionDenied
    figures = dashboard_figures(request.user)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "status_chart": bar_chart(figures.by_status),
        "expiring_chart": bar_chart(figures.expiring),
        "use_chart": column_chart(figures.use_per_day),
        "top_chart": bar_chart(figures.top_applications),
        "figures": figures,
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


def bar_chart(rows: list[tuple[str, int]], width: int = 360) -> dict:
    """Horizontal bars for server-side SVG: label, value and bar length."""
    top = max((value for _, value in rows), default=0) or 1
    return {
        "rows": [
            {"label": str(label), "value": value, "length": round(width * value / top), "y": i * 30}
            for i, (label, value) in enumerate(rows)
        ],
        "height": max(len(rows), 1) * 30,
        "width": width,
    }


def column_chart(rows: list[tuple[object, int]], height: int = 120, column: int = 14) -> dict:
    top = max((value for _, value in rows), default=0) or 1
    bars = []
    for i, (day, value) in enumerate(rows):
        length = round(height * value / top)
        bars.append(
            {"label": f"{day:%d %b}", "value": value, "x": i * (column + 4), "y": height - length, "length": length}
        )
    return {
        "bars": bars,
        "height": height,
        "width": len(rows) * (column + 4),
        "column": column,
        "total": sum(value for _, value in rows),
    }
