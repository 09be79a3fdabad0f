"""Create the service's own roles: the administrator kinds and "developer".

Their permission codes are those of this service's admin API; holders can put
the PAT-eligible ones in an administrative personal access token.
"""

from django.db import migrations

SERVICE_ROLES = [
    ("main_administrator", "Main administrator", "All tenants, users, applications and tokens.",
     ["iam.health.advanced", "iam.audit.read"], True),
    ("user_administrator", "User administrator", "The users and tokens of their own tenant.",
     ["iam.audit.read"], True),
    ("application_administrator", "Application administrator", "Applications and their roles.", [], False),
    ("developer", "Developer", "Reads the advanced health check.", ["iam.health.advanced"], True),
]


def create_service_roles(apps, schema_editor):
    Role = apps.get_model("iam", "Role")
    for code, name, description, permissions, pat_eligible in SERVICE_ROLES:
        Role.objects.update_or_create(
            application=None,
            code=code,
            defaults={"name": name, "description": description, "permissions": permissions,
                      "pat_eligible": pat_eligible},
        )


class Migration(migrations.Migration):
    dependencies = [("iam", "0002_initial")]
    operations = [migrations.RunPython(create_service_roles, migrations.RunPython.noop)]
