"""The Celery app. Configuration comes from Django settings (CELERY_* names); tasks live in tasks/."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

app = Celery("gavel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tasks"], related_name="bids")
app.autodiscover_tasks(["tasks"], related_name="lifecycle")

from tasks.worker import install as _install_worker_parts  # noqa: E402

_install_worker_parts(app)

from tasks.connections import install as _keep_connections  # noqa: E402

_keep_connections(app)
