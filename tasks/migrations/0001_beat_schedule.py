from django.db import migrations


def forwards(apps, schema_editor):
    from tasks.schedule import ensure_beat_schedule

    ensure_beat_schedule(apps.get_model("django_celery_beat", "IntervalSchedule"),
                         apps.get_model("django_celery_beat", "PeriodicTask"))


class Migration(migrations.Migration):
    dependencies = [("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
