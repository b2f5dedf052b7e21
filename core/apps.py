from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Users and coins"

    def ready(self) -> None:
        from core import checks, signals  # noqa: F401
