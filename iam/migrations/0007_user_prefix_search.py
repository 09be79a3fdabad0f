from django.db import migrations

# The console's token search looks owners up by the start of lower(username) or
# lower(email). PostgreSQL serves LIKE 'prefix%' from an index only with a
# pattern operator class (or the C collation); other databases need nothing.
INDEXES = {
    "user_username_prefix": "lower(username) text_pattern_ops",
    "user_email_prefix": "lower(email) text_pattern_ops",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, expression in INDEXES.items():
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON iam_user ({expression})")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("iam", "0006_alter_auditevent_action")]

    operations = [migrations.RunPython(create, drop)]
