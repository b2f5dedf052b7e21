"""Every user has an account, however the user was created (API, admin, createsuperuser)."""

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from core.models import User


@receiver(post_save, sender=User, dispatch_uid="gavel-open-account")
def open_account(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        from core import ledger

        with transaction.atomic():
            ledger.account_open(user=instance)
