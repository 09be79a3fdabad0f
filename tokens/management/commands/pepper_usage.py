from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count
from django.utils import timezone

from tokens.models import EmbedSession, IntegrationCredential, OAuthClient, PersonalAccessToken, TokenStatus


class Command(BaseCommand):
    help = (
        "Report what still depends on each pepper of TOKEN_PEPPERS (live tokens, integration credentials, "
        "OAuth clients, embed sessions), so an operator knows when a retired pepper can be removed."
    )

    def handle(self, *args, **options):
        now = timezone.now()
        live = {
            "personal access tokens": PersonalAccessToken.objects.filter(status=TokenStatus.ACTIVE, expires_at__gt=now),
            "integration credentials": IntegrationCredential.objects.filter(revoked_at__isnull=True),
            "OAuth clients": OAuthClient.objects.filter(revoked_at__isnull=True),
            "embed sessions": EmbedSession.objects.filter(expires_at__gt=now),
        }
        counts: dict[str, dict[str, int]] = {}
        for what, rows in live.items():
            for pepper_id, count in rows.order_by().values_list("pepper_id").annotate(n=Count("pk")):
                counts.setdefault(pepper_id, {})[what] = count
        configured = list(settings.TOKEN_PEPPERS)
        for position, pepper_id in enumerate(configured + sorted(set(counts) - set(configured))):
            role = "current" if position == 0 else "retired" if pepper_id in configured else "NOT CONFIGURED"
            uses = counts.get(pepper_id, {})
            summary = ", ".join(f"{count} {what}" for what, count in uses.items()) or "nothing"
            verdict = ""
            if role == "retired":
                verdict = " — can be removed" if not uses else " — keep it until these are used once or end"
            elif role == "NOT CONFIGURED" and uses:
                verdict = " — these no longer work"
            self.stdout.write(f"{pepper_id} ({role}): {summary}{verdict}")
