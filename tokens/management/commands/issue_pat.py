from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from core.errors import DomainError
from iam.models import User
from iam.selectors import roles_held_for_tokens
from tenants.models import Application
from tokens.services import token_create


class Command(BaseCommand):
    help = (
        "Create a personal access token as a user, under the same rules as the pages and the API, "
        "and print only the token."
    )

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username or email of the owner.")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--app", help="Slug of the application the token is for.")
        target.add_argument("--admin", action="store_true", help="An administrative token for this service's API.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--days", type=int, required=True, help="Lifetime in days (1 to 365).")
        parser.add_argument(
            "--role",
            action="append",
            dest="roles",
            default=None,
            help="Role code to grant; repeat for several. "
            "Default: all the user's PAT-eligible roles there that need no approval.",
        )

    def handle(self, *args, **options):
        identifier = options["user"].strip()
        user = User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier)).first()
        if user is None:
            raise CommandError(f"No user {identifier!r}.")
        application = None
        if options["app"]:
            application = Application.objects.filter(slug=options["app"]).first()
            if application is None:
                raise CommandError(f"No application {options['app']!r}.")
        role_codes = options["roles"]
        if role_codes is None:
            role_codes = list(
                roles_held_for_tokens(user)
                .filter(application=application, needs_token_approval=False)
                .order_by("code")
                .values_list("code", flat=True)
            )
        try:
            issued = token_create(
                owner=user,
                application=application,
                name=options["name"],
                expires_at=timezone.now() + timedelta(days=options["days"]),
                role_codes=role_codes,
            )
        except DomainError as error:
            details = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.fields.items())
            raise CommandError(f"{error.message} {details}".strip()) from None
        if issued.token.approval:
            self.stderr.write("The token awaits a user administrator's approval: it works once approved.")
        self.stdout.write(issued.plaintext)
