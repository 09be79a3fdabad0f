"""Main and user administrators may manage users' tokens through the API."""

from django.db import migrations

PERMISSION = "iam.tokens.manage"


def add_permission(apps, schema_editor):
    Role = apps.get_model("iam", "Role")
    for role in Role.objects.filter(application=None, code__in=["main_administrator", "user_administrator"]):
        if PERMISSION not in role.permissions:
            role.permissions = [*role.permissions, PERMISSION]
            role.save(update_fields=["permissions"])


def remove_permission(apps, schema_editor):
    Role = apps.get_model("iam", "Role")
    for role in Role.objects.filter(application=None):
        if PERMISSION in role.permissions:
            role.permissions = [code for code in role.permissions if code != PERMISSION]
            role.save(update_fields=["permissions"])


class Migration(migrations.Migration):
    dependencies = [("iam", "0004_audit_trail_names")]
    operations = [migrations.RunPython(add_permission, remove_permission)]
