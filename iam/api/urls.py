from django.urls import path

from iam.api.views import AuditEventListView, HealthView

urlpatterns = [
    path("admin/health", HealthView.as_view(), name="api-admin-health"),
    path("admin/audit-events", AuditEventListView.as_view(), name="api-admin-audit-events"),
]
