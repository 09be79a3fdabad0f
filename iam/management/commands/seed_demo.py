import json

from django.core.management.base import BaseCommand

from iam.demo import demo_data_as_json, load_demo_data


class Command(BaseCommand):
    help = "Load the demo tenants, applications, roles and users (idempotent) and print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the demo data as one JSON object.")

    def handle(self, *args, **options):
        data = demo_data_as_json(load_demo_data())
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(self.style.SUCCESS("Demo data loaded. Sign in with any of these:"))
        for user in data["users"]:
            notes = []
            if user["admin"]:
                notes.append(f"{user['admin']} administrator")
            notes.append("may create PATs" if user["can_create_pats"] else "may not create PATs")
            self.stdout.write(
                f"  {user['username']:<8} {user['password']:<20} tenant {user['tenant']:<7} ({', '.join(notes)})"
            )
