"""User services: registration and authentication."""

from __future__ import annotations

import re

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core import ledger
from core.errors import InvalidInput
from core.models import User

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")


def user_register(*, username: object, password: object) -> User:
    """Create a user with an account and the signup bonus. 400 if the name is taken or the
    password weak."""
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise InvalidInput("username must be 3-32 letters, digits, '_', '.' or '-'",
                           code="invalid_username", details={"field": "username"})
    if not isinstance(password, str) or len(password) > 128:
        raise InvalidInput("password must be a string of at most 128 characters",
                           code="weak_password", details={"field": "password"})
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput("that username is taken", code="username_taken", details={"field": "username"})
    try:
        validate_password(password, User(username=username))
    except ValidationError as exc:
        raise InvalidInput("; ".join(exc.messages), code="weak_password", details={"field": "password"}) from None
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, password=password)
            ledger.account_open(user=user)
    except IntegrityError:
        raise InvalidInput("that username is taken", code="username_taken", details={"field": "username"}) from None
    return user


def user_authenticate(*, username: object, password: object) -> User | None:
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    user = authenticate(username=username, password=password)
    return user if user is not None and user.is_active else None
