from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Analysis"

    def ready(self) -> None:
        from tokens.api import schema  # noqa: F401 - registers the OpenAPI authentication schemes
        from tokens.authcache import connect_invalidation

        connect_invalidation()
