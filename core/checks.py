"""Gavel's own deployment checks, run by `manage.py check --deploy` beside Django's."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_secret_key_from_environment(app_configs, **kwargs) -> list[Warning]:
    # Without SECRET_KEY each machine makes up its own key under var/ (core.settings): tokens
    # signed by one web node would be refused by the next, and the key lives beside the data.
    if settings.SECRET_KEY_FROM_ENV:
        return []
    return [Warning(
        "SECRET_KEY is not set in the environment; a key generated under GAVEL_VAR_DIR is used.",
        hint="Set SECRET_KEY to one long random value shared by every web node and worker.",
        id="gavel.W001",
    )]
