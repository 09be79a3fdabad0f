from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens"

    def ready(self) -> None:
        from core.api import schema  # noqa: F401 - registers the OpenAPI authentication schemes
        from core.changes import watcher_register
        from iam.audit import audit_listener_register
        from tokens.authcache import connect_invalidation
        from tokens.watcher import TokenWatcher
        from tokens.webhooks import webhook_events_from_audit

        connect_invalidation()
        audit_listener_register(webhook_events_from_audit)
        watcher_register(TokenWatcher())
