"""The beat scheduler reading its entries while one of them is being deleted."""

import pytest
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from celery_app import app
from tasks.beat_scheduler import Scheduler
from tasks.schedule import BEAT_ENTRIES, ensure_beat_schedule


def _delete_interval_after_the_entries_are_read(every: int):
    """An execute wrapper that, when the entries have been read and their intervals are about to
    be, deletes one interval (and with it its entries), as an operator in the admin would."""
    done = []

    def wrapper(execute, sql, params, many, context):
        if not done and sql.startswith('SELECT "django_celery_beat_intervalschedule"'):
            done.append(sql)
            IntervalSchedule.objects.filter(every=every, period="seconds").delete()
        return execute(sql, params, many, context)

    return wrapper, done


def _read(scheduler_class, every):
    scheduler = scheduler_class(app=app, lazy=True)
    wrapper, done = _delete_interval_after_the_entries_are_read(every)
    with connection.execute_wrapper(wrapper):
        schedule = scheduler.all_as_schedule()
    assert done, "the intervals were not read"
    return schedule


@pytest.mark.django_db
def test_an_entry_deleted_between_the_entries_and_their_schedules_is_skipped():
    ensure_beat_schedule()
    gone = {name for name, _, every, _ in BEAT_ENTRIES if every == 2}
    assert gone and PeriodicTask.objects.filter(name__in=gone).exists()

    schedule = _read(Scheduler, every=2)

    assert set(schedule) == {name for name, *_ in BEAT_ENTRIES} - gone
    assert all(entry.schedule.run_every.total_seconds() == 1 for entry in schedule.values())


@pytest.mark.django_db
def test_the_stock_scheduler_dies_on_that_read():
    """Why tasks.beat_scheduler exists: if django-celery-beat fixes this, the subclass can go."""
    ensure_beat_schedule()
    with pytest.raises(AttributeError):
        _read(DatabaseScheduler, every=2)
