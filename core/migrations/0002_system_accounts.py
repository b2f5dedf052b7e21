from django.db import migrations


def forwards(apps, schema_editor):
    Account = apps.get_model("core", "Account")
    for kind in ("mint", "house"):
        Account.objects.get_or_create(kind=kind, user=None)


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
