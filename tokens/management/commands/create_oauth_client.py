import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from tenants.models import Application
from tokens.oauth import oauth_client_create


class Command(BaseCommand):
    help = 'Register an OAuth client of an application and print {"client_id", "client_secret"} as JSON.'

    def add_arguments(self, parser):
        parser.add_argument("--app", required=True, help="Application slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--token-exchange", action="store_true", help="Allow the token exchange grant.")
        parser.add_argument("--scope", action="append", dest="scopes", help="An allowed scope; repeat for several.")
        parser.add_argument("--lifetime", type=int, default=3600, help="Access token lifetime in seconds.")

    def handle(self, *args, **options):
        application = Application.objects.filter(slug=options["app"]).first()
        if application is None:
            raise CommandError(f"No application {options['app']!r}.")
        try:
            issued = oauth_client_create(
                application=application,
                name=options["name"],
                actor=None,
                token_exchange=options["token_exchange"],
                allowed_scopes=options["scopes"],
                access_token_lifetime=options["lifetime"],
            )
        except DomainError as error:
            details = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.fields.items())
            raise CommandError(f"{error.message} {details}".strip()) from None
        self.stdout.write(json.dumps({"client_id": issued.client.client_id, "client_secret": issued.secret}))
