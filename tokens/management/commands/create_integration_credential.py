from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from tenants.models import Tenant
from tokens.credentials import integration_credential_create
from tokens.models import IntegrationCredential


class Command(BaseCommand):
    help = "Create a tenant's integration credential (for the embedding API) and print only the credential."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=IntegrationCredential.Scope.values,
            help="Repeat for several; default: embed.",
        )

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        try:
            issued = integration_credential_create(
                tenant=tenant, name=options["name"], actor=None, scopes=options["scopes"]
            )
        except DomainError as error:
            details = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.fields.items())
            raise CommandError(f"{error.message} {details}".strip()) from None
        self.stdout.write(issued.plaintext)
