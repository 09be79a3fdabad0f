import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from iam.demo import demo_data_as_json, demo_data_read, load_demo_data


class Command(BaseCommand):
    help = (
        "Create the demo tenants, applications, roles and users that are missing (never undoing later changes) "
        "and print the logins."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help="Only print the demo data as one JSON object (changes nothing)."
        )

    def handle(self, *args, **options):
        if options["json"]:
            data = demo_data_read()
            if not data.users:
                raise CommandError("There is no demo data yet: run manage.py seed_demo first.")
            self.stdout.write(json.dumps(demo_data_as_json(data), indent=2))
            return
        data = demo_data_as_json(load_demo_data())
        self.stdout.write(self.style.SUCCESS("Demo data loaded. Sign in with any of these:"))
        for user in data["users"]:
            notes = []
            if user["admin"]:
                notes.append(f"{user['admin']} administrator")
            notes.append("may create PATs" if user["can_create_pats"] else "may not create PATs")
            self.stdout.write(
                f"  {user['username']:<8} {user['password']:<20} tenant {user['tenant']:<7} ({', '.join(notes)})"
            )
        base = settings.PUBLIC_URL.rstrip("/")
        self.stdout.write("Then open:")
        places = (("your tokens", "tokens:list"), ("the console", "admin:index"), ("the API docs", "api-docs"))
        for what, name in places:
            self.stdout.write(f"  {what:<12} {base}{reverse(name)}")
