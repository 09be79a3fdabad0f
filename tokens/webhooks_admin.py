"""The console's webhook pages (Integrations > Webhook endpoints and their
deliveries): for a tenant's user administrators and the main administrators."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from core.admin import TOKEN_VIEWER_KINDS, AdminKindMixin, OneTimeSecretMixin, ReadOnlyAdmin
from core.errors import DomainError
from core.http import client_ip
from iam.selectors import tenants_visible_to, user_is_main_administrator, visible_to
from tokens.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tokens.webhooks import webhook_endpoint_create, webhook_endpoint_set_active, webhook_test_send, webhook_url_problem

DELIVERIES_SHOWN = 50


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="https:// to a public address. Deliveries are POSTed there, signed.",
    )
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple, initial=list(WebhookEvent.values)
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["tenant", "url", "description", "events"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if problem := webhook_url_problem(url):
            raise forms.ValidationError(problem)
        return url


def _endpoints_visible_to(user):
    return visible_to(user, WebhookEndpoint.objects.select_related("tenant"))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OneTimeSecretMixin, AdminKindMixin, admin.ModelAdmin):
    view_kinds = change_kinds = TOKEN_VIEWER_KINDS
    form = WebhookEndpointForm
    change_form_template = "admin/tokens/webhookendpoint/change_form.html"
    list_display = ["url", "tenant", "event_list", "state", "created_at"]
    readonly_fields = ["event_list", "secret_prefix", "state", "created_at", "created_by"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "url", "description", "events"]
        return ["tenant", "url", "description", "event_list", "secret_prefix", "state", "created_at", "created_by"]

    def get_list_filter(self, request):
        return ["tenant", "is_active"] if user_is_main_administrator(request.user) else ["is_active"]

    def get_queryset(self, request):
        return visible_to(request.user, super().get_queryset(request).select_related("tenant"))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenants_visible_to(request.user)
            if not user_is_main_administrator(request.user):  # their own tenant, the one choice
                kwargs.update(initial=request.user.tenant_id, empty_label=None)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        # Registered once: to change where events go, register another endpoint.
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.display(description="state")
    def state(self, obj: WebhookEndpoint) -> str:
        if not obj.is_active:
            return f"Disabled on {obj.disabled_at:%Y-%m-%d %H:%M}. {obj.disabled_reason}".strip()
        return f"Failing since {obj.failing_since:%Y-%m-%d %H:%M}" if obj.failing_since else "Active"

    def save_model(self, request, obj, form, change):
        issued = webhook_endpoint_create(
            tenant=form.cleaned_data["tenant"],
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events"],
            description=form.cleaned_data["description"],
            actor=request.user,
            ip=client_ip(request),
        )
        obj.pk, obj._state.adding = issued.endpoint.pk, False
        request._issued_secret = issued.secret

    secret_label = "signing secret"
    secret_kept = "It is kept encrypted, to sign the deliveries; verify them with it (Standard Webhooks)."

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # as Django would: 403 whatever the id
        endpoint = get_object_or_404(self.get_queryset(request), pk=object_id)
        deliveries = endpoint.deliveries.order_by("-id")[:DELIVERIES_SHOWN]
        extra_context = {
            **(extra_context or {}),
            "deliveries": deliveries,
            "deliveries_url": reverse("admin:tokens_webhookdelivery_changelist")
            + f"?endpoint__id__exact={endpoint.pk}",
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path("<int:endpoint_id>/test/", self.admin_site.admin_view(self.test_view), name="tokens_webhook_test"),
            path(
                "<int:endpoint_id>/active/",
                self.admin_site.admin_view(self.activity_view),
                name="tokens_webhook_on",
            ),
            *super().get_urls(),
        ]

    def _endpoint(self, request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
        if not self.has_module_permission(request):
            raise PermissionDenied
        return get_object_or_404(self.get_queryset(request), pk=endpoint_id)

    @staticmethod
    def _back(endpoint: WebhookEndpoint) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:tokens_webhookendpoint_change", args=[endpoint.pk]))

    @method_decorator(require_POST)
    def test_view(self, request: HttpRequest, endpoint_id: int) -> HttpResponse:
        endpoint = self._endpoint(request, endpoint_id)
        try:
            delivery = webhook_test_send(endpoint=endpoint, actor=request.user, ip=client_ip(request))
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return self._back(endpoint)
        self.message_user(request, f"Test event {delivery.message_id} queued; its attempts are listed below.")
        return self._back(endpoint)

    @method_decorator(require_POST)
    def activity_view(self, request: HttpRequest, endpoint_id: int) -> HttpResponse:
        endpoint = self._endpoint(request, endpoint_id)
        active = request.POST.get("active") == "1"
        webhook_endpoint_set_active(
            endpoint=endpoint, active=active, actor=request.user, reason="By an administrator.", ip=client_ip(request)
        )
        self.message_user(
            request, "Endpoint enabled: pending deliveries are sent now." if active else "Endpoint disabled."
        )
        return self._back(endpoint)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Every delivery's status, attempts, last response and next try."""

    view_kinds = TOKEN_VIEWER_KINDS
    list_display = [
        "message_id",
        "event_type",
        "endpoint_link",
        "status",
        "attempts",
        "last_response_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event_type"]
    exclude = ["payload"]
    readonly_fields = ["payload_shown"]

    def get_queryset(self, request):
        endpoints = _endpoints_visible_to(request.user).values("pk")
        return super().get_queryset(request).filter(endpoint__in=endpoints).select_related("endpoint")

    @admin.display(description="endpoint")
    def endpoint_link(self, obj: WebhookDelivery) -> str:
        url = reverse("admin:tokens_webhookendpoint_change", args=[obj.endpoint_id])
        return format_html('<a href="{}">{}</a>', url, obj.endpoint.url)

    @admin.display(description="payload")
    def payload_shown(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))
