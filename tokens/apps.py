from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Analysis"

    def ready(self) -> None:
        from tokens.api import schema  # noqa: F401 - registers the OpenAPI authentication schemes
