"""Analysis > Dashboard: pictures of the tokens an administrator may see,
drawn as server-side SVG (no script, no chart library)."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from core.admin import TOKEN_VIEWER_KINDS
from iam.selectors import user_admin_kind
from tokens.selectors import dashboard_figures


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Analysis > Dashboard: pictures of the tokens the administrator may see."""
    if user_admin_kind(request.user) not in TOKEN_VIEWER_KINDS:
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
