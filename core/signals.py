"""Every user has an account, however the user was created (API, admin, createsuperuser); a
user changed or deleted here is read afresh by the next request with their token."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from core.models import User


@receiver(post_save, sender=User, dispatch_uid="gavel-open-account")
def open_account(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        from core import ledger

        with transaction.atomic():
            ledger.account_open(user=instance)


@receiver(post_save, sender=User, dispatch_uid="gavel-forget-token-user")
@receiver(post_delete, sender=User, dispatch_uid="gavel-forget-deleted-token-user")
def forget_token_user(sender, instance: User, **kwargs) -> None:
    from core import tokens

    # Now, and again after the commit: a request in between could read the old row and keep it.
    user_id = instance.pk
    tokens.forget_user(user_id)
    transaction.on_commit(lambda: tokens.forget_user(user_id))
