"""bench/django_side.py `bidders`, in process on the test database: the benchmarks' bulk setup
makes users as registration does (account, signup bonus), grants through the ledger, issues
tokens the API accepts, and hashes the shared password once."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.auth import hashers

from bench import django_side
from bench.django_side import ledger_audit
from core.models import Account, Transfer, User
from core.tokens import user_from_token


def run_bidders(capsys, *args: str) -> dict:
    assert django_side.main(["bidders", *args]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.django_db
def test_bidders_in_bulk(capsys, make_user, monkeypatch):
    admin = make_user("admin", staff=True)
    calls = []
    real = hashers.make_password
    monkeypatch.setattr(hashers, "make_password", lambda *a, **k: calls.append(1) or real(*a, **k))

    out = run_bidders(capsys, "--prefix", "ub_", "--count", "5", "--grant", "777", "--granted-by", "admin",
                      "--batch", "2")

    assert len(calls) == 1 and out["password_hashes"] == 1
    names = [name for name, _token in out["users"]]
    assert names == [f"ub_{k}" for k in range(5)]
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    assert len(users) == 5 and len({u.password for u in users.values()}) == 1
    assert users["ub_3"].check_password(out["password"])
    for name, token in out["users"]:
        user = users[name]
        assert user_from_token(token) == user and user.is_active and not user.is_staff
        account = Account.objects.get(user=user)
        assert (account.balance, account.held) == (settings.SIGNUP_BONUS + 777, 0)
        kinds = sorted(Transfer.objects.filter(credit=account).values_list("kind", "amount", "created_by"))
        assert kinds == sorted([(Transfer.Kind.SIGNUP_BONUS, settings.SIGNUP_BONUS, None),
                                (Transfer.Kind.GRANT, 777, admin.pk)])
    audit = ledger_audit()
    assert audit["sum"] == 0
    assert not (audit["negative_available"] or audit["held_mismatch"] or audit["balance_mismatch"])

    with pytest.raises(SystemExit, match="taken"):
        django_side.main(["bidders", "--prefix", "ub_", "--count", "2"])
