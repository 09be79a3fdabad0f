import django_filters
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.filters import DateTimeFilter, IdFilter, StrictFilterSet, TextFilter
from core.api.schema import errors, example
from core.permissions import HasTokenPermissions
from iam.models import AdminPermission, AuditAction, AuditEvent
from iam.selectors import audit_events_visible_to


class HealthView(APIView):
    """Advanced health check: database and cache round trips (administrative PAT)."""

    permission_classes = [HasTokenPermissions]
    required_permissions = (AdminPermission.HEALTH_ADVANCED,)

    @extend_schema(
        operation_id="admin_health",
        summary="Advanced health check (administrative PAT with iam.health.advanced)",
        responses={
            200: inline_serializer(
                name="Health", fields={"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
            503: inline_serializer(
                name="HealthDegraded", fields={"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
            **errors(400, 401, 403, 429),
        },
        tags=["admin"],
    )
    def get(self, request: Request) -> Response:
        checks = {
            "database": _check(lambda: connection.cursor().execute("SELECT 1")),
            "cache": _check(_cache_round_trip),
        }
        healthy = all(check["ok"] for check in checks.values())
        return Response({"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503)


def _cache_round_trip() -> None:
    cache.set("health-check", "ok", 5)
    if cache.get("health-check") != "ok":
        raise RuntimeError("cache did not return the value written")


def _check(probe) -> dict:
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - a health check reports any failure
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True}


class AuditEventFilter(StrictFilterSet):
    tenant = TextFilter(field_name="tenant__slug")
    actor = TextFilter(field_name="actor_label")
    token = IdFilter(field_name="token_id")
    action = django_filters.ChoiceFilter(choices=AuditAction.choices)
    since = DateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = DateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["tenant", "actor", "token", "action", "since", "until"]


class AuditEventSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = AuditEvent
        fields = ["id", "occurred_at", "tenant", "actor", "action", "token", "ip", "changes", "reason"]


@extend_schema_view(
    get=extend_schema(
        operation_id="admin_audit_events",
        summary="The audit trail (administrative PAT with iam.audit.read), scoped to the owner's tenants",
        responses={
            200: AuditEventSerializer(many=True),
            **errors(400, 401, 403, 429),
        },
        examples=[
            example(
                "A page",
                {
                    "count": 1,
                    "next": None,
                    "previous": None,
                    "results": [
                        {
                            "id": 42,
                            "occurred_at": "2026-11-23T09:00:00Z",
                            "tenant": "acme",
                            "actor": "carol",
                            "action": "token.revoked",
                            "token": 7,
                            "ip": "10.0.0.5",
                            "changes": {},
                            "reason": "leaked",
                        }
                    ],
                },
            )
        ],
        tags=["admin"],
    )
)
class AuditEventListView(generics.ListAPIView):
    """The audit trail the token's owner may read, newest first."""

    permission_classes = [HasTokenPermissions]
    required_permissions = (AdminPermission.AUDIT_READ,)
    filterset_class = AuditEventFilter
    serializer_class = AuditEventSerializer

    def get_queryset(self):
        return audit_events_visible_to(self.request.user)
