"""REST endpoints for people and coins: register, token, /me, the statement, staff grants.

Also home of what every router shares: the Bearer authentication and the error schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.security import HttpBearer
from pydantic import AfterValidator, Strict

from core import ledger
from core.errors import Forbidden, NotAuthenticated, NotFound
from core.models import Account, User
from core.timefmt import iso
from core.tokens import access_token_issue, user_from_authorization, user_from_token
from core.users import user_authenticate, user_register

MAX_AMOUNT = 10**12
# The largest id a database row can have (signed 64-bit); a bigger one cannot name anything.
MAX_ID = 2**63 - 1

# Amounts are JSON integers only: strict mode refuses 5.0, "5" and true.
Coins = Annotated[int, Strict(), Field(ge=1, le=MAX_AMOUNT)]


def _storable(value: str) -> str:
    # PostgreSQL refuses NUL in text, and JSON's "\ud800" decodes to a lone surrogate that no
    # database driver (nor the password hasher) can encode: refuse both here as bad input rather
    # than fail with a 500 further in.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


# Every string a body carries into a query or a row.
Text = Annotated[str, AfterValidator(_storable)]

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="gavel"'}


# --- authentication ------------------------------------------------------------------------


class Bearer(HttpBearer):
    """`Authorization: Bearer <access token>` (see core.tokens).

    - no header: 401 `not_authenticated`, or an AnonymousUser when `optional`;
    - a header that does not name an active user (garbage, expired, wrong scheme): 401, even
      on endpoints open to anyone, so a client learns at once that its token is no good;
    - `staff`: a valid token of a non-staff user is 403 `forbidden`. Ninja runs this before it
      reads the body, so a non-staff caller gets 403 whatever the body holds.
    """

    def __init__(self, *, staff: bool = False, optional: bool = False) -> None:
        super().__init__()
        self.staff = staff
        self.optional = optional

    def __call__(self, request: HttpRequest) -> User | AnonymousUser | None:
        header = request.headers.get(self.header)
        if not header:
            return AnonymousUser() if self.optional else None
        user = user_from_authorization(header)
        if user is None:
            raise NotAuthenticated("the access token is invalid or expired", headers=WWW_AUTHENTICATE)
        if self.staff and not user.is_staff:
            raise Forbidden("this is for staff only")
        return user

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        # Required by HttpBearer; __call__ above does the work (and distinguishes the cases).
        return user_from_token(token)


user_auth = Bearer()
staff_auth = Bearer(staff=True)
optional_auth = Bearer(optional=True)


# --- shared schemas ------------------------------------------------------------------------


class ErrorDetail(Schema):
    code: str = Field(..., examples=["not_found"])
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(Schema):
    error: ErrorDetail


# --- auth ----------------------------------------------------------------------------------

router = Router(tags=["users"])


class Credentials(Schema):
    username: Text
    password: Text


class RegisteredOut(Schema):
    id: int
    username: str


class TokenOut(Schema):
    access: str
    token_type: str = Field(..., examples=["Bearer"])
    expires_in: int


@router.post("/auth/register", response={201: RegisteredOut, 400: ErrorOut}, auth=None)
def register(request: HttpRequest, payload: Credentials):
    """Create a user (with the signup bonus). 400 `username_taken`, `invalid_username` or
    `weak_password`."""
    user = user_register(username=payload.username, password=payload.password)
    return Status(201, {"id": user.pk, "username": user.username})


@router.post("/auth/token", response={200: TokenOut, 400: ErrorOut, 401: ErrorOut}, auth=None)
def token(request: HttpRequest, payload: Credentials):
    """Exchange a username and password for an access token. 401 `invalid_credentials` for a
    wrong pair; 400 only when the body itself is malformed."""
    user = None
    if len(payload.username) <= 150 and len(payload.password) <= 128:  # longer never matches
        user = user_authenticate(username=payload.username, password=payload.password)
    if user is None:
        raise NotAuthenticated("wrong username or password", code="invalid_credentials")
    return Status(200, access_token_issue(user=user))


# --- me ------------------------------------------------------------------------------------


class MeOut(Schema):
    id: int
    username: str
    is_staff: bool
    balance: int
    held: int
    available: int


class StatementLine(Schema):
    id: int
    kind: str = Field(..., examples=["signup_bonus", "grant", "settlement"])
    amount: int = Field(..., description="signed from the caller's side: negative when coins leave them")
    balance_after: int
    auction_id: int | None
    created_at: str


class StatementOut(Schema):
    results: list[StatementLine]


def _account(user: User) -> Account:
    # Every user has one (core.signals); a user loaded raw from a fixture may not, and opening
    # it here is idempotent. Plain read first: opening takes the write lock.
    return Account.objects.filter(user=user).first() or ledger.account_open(user=user)


@router.get("/me", response={200: MeOut, 401: ErrorOut}, auth=user_auth)
def me(request: HttpRequest):
    user: User = request.auth
    account = _account(user)
    return {
        "id": user.pk,
        "username": user.username,
        "is_staff": user.is_staff,
        "balance": account.balance,
        "held": account.held,
        "available": account.available,
    }


@router.get("/me/ledger", response={200: StatementOut, 400: ErrorOut, 401: ErrorOut}, auth=user_auth)
def my_ledger(request: HttpRequest, limit: int = Query(200, ge=1, le=1000)):
    """The caller's statement, newest first (at most `limit`): every transfer that touched their
    account, `amount` signed from their side and their balance right after it. Holds are not
    transfers and do not appear here."""
    account = _account(request.auth)
    results = [
        {
            "id": line.transfer.pk,
            "kind": line.transfer.kind,
            "amount": line.amount,
            "balance_after": line.balance_after,
            "auction_id": line.transfer.auction_id,
            "created_at": iso(line.transfer.created_at),
        }
        for line in ledger.account_statement(account=account, limit=limit)
    ]
    return {"results": results}


# --- wallet (staff) ------------------------------------------------------------------------


class GrantIn(Schema):
    username: Text
    amount: Coins
    memo: Text | None = Field(None, max_length=200)


class GrantOut(Schema):
    transfer_id: int
    username: str
    amount: int


@router.post(
    "/wallet/grants",
    response={201: GrantOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    auth=staff_auth,
)
def grant(request: HttpRequest, payload: GrantIn):
    """Staff: mint `amount` new coins to a user. An unknown username is 404 `not_found` (the
    contract's rule for unknown objects; details name the field), unlike auction creation's
    `seller`, which the contract makes a 400."""
    user = User.objects.filter(username=payload.username, account__isnull=False).first()
    if user is None:
        raise NotFound(f"no user named {payload.username!r}", details={"field": "username"})
    transfer = ledger.grant(username=user.username, amount=payload.amount, memo=payload.memo or "", by=request.auth)
    return Status(201, {"transfer_id": transfer.pk, "username": user.username, "amount": transfer.amount})
