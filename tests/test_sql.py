"""core.sql: the hand-written statements of the hot paths, on both databases."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from auctions.models import Auction, AuctionEvent, Bid
from core import clock, ledger, sql
from core.models import Account


@pytest.fixture
def auctions(db):
    now = clock.now()
    return [Auction.objects.create(title=f"lot {n}", starts_at=now, ends_at=now + timedelta(hours=1),
                                   hard_close_at=now + timedelta(hours=2), starting_price=10) for n in range(3)]


def test_queued_writes_all_land_and_on_postgresql_in_one_statement(auctions):
    first, second, third = auctions
    at = clock.now()
    data = AuctionEvent._meta.get_field("data").get_db_prep_save
    when = connection.ops.adapt_datetimefield_value(at)
    writes = sql.Writes()
    writes.add(*sql.update(Auction, ("current_price", "seq"), ("pk",), [(15, 3, first.pk), (25, 4, second.pk)]))
    writes.add(*sql.insert(AuctionEvent, ("auction", "seq", "type", "data", "at"),
                           [(first.pk, 1, "bid.accepted", data({"n": 1}, connection), when),
                            (second.pk, 1, "bid.accepted", data({"n": 2}, connection), when)]))
    writes.add(*sql.update(Auction, ("title",), ("pk",), [("not this one", third.pk)], '"auctions_auction"."seq" = %s',
                           (99,)))  # the extra condition holds for no row
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        writes.flush()
    statements = [q for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(statements) == (1 if connection.vendor == "postgresql" else 3)
    got = {a.pk: (a.current_price, a.seq, a.title) for a in Auction.objects.all()}
    assert got == {first.pk: (15, 3, "lot 0"), second.pk: (25, 4, "lot 1"), third.pk: (None, 0, "lot 2")}
    events = AuctionEvent.objects.order_by("auction_id")
    assert [(e.auction_id, e.data, e.at) for e in events] == [(first.pk, {"n": 1}, at), (second.pk, {"n": 2}, at)]
    writes.flush()  # flushed writes are gone: nothing runs twice
    assert AuctionEvent.objects.count() == 2


def test_a_failing_write_fails_the_flush_and_the_transaction_keeps_nothing(auctions):
    first = auctions[0]
    house = ledger.system_account(Account.Kind.HOUSE)
    writes = sql.Writes()
    writes.add(*sql.update(Auction, ("current_price",), ("pk",), [(15, first.pk)]))
    writes.add(*sql.update(Account, ("held",), ("pk",), [(-1, house.pk)]))  # held >= 0
    with pytest.raises(IntegrityError), transaction.atomic():
        writes.flush()
    first.refresh_from_db()
    assert first.current_price is None


def test_instances_convert_values_as_the_orm_does(auctions):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql.columns(Auction)} FROM auctions_auction ORDER BY id")
        made = sql.instances(Auction, cursor.fetchall())
    assert [(a.pk, a.title, a.ends_at, a.armed_start) for a in made] == [
        (a.pk, a.title, a.ends_at, a.armed_start) for a in Auction.objects.order_by("id")]
    assert all(a.ends_at.tzinfo is not None and a.armed_start is False for a in made)
    made[0].title = "saved through the ORM"
    made[0].save(update_fields=["title"])  # an instance like any the ORM makes: not "adding"
    assert Auction.objects.get(pk=made[0].pk).title == "saved through the ORM"
    assert Bid.objects.count() == 0


AWKWARD_TEXTS = ["plain", "", " padded ", 'say "hi"', "back\\slash", "\\", '\\"', "{braces}", "a,b", "NULL", "null",
                 "ünïcödé ✓", "new\nline", "tab\there", "it's"]


def test_parameter_rows_come_back_exactly_as_given(db):
    """What the hot statements send as parameter rows (on PostgreSQL, array text built by
    core.sql) reads back unchanged, whatever the text holds: quotes, backslashes, braces,
    commas, the word NULL, newlines."""
    at = clock.now()
    enum_status = Auction.Status.LIVE  # a str enum: a subclass of a handled type
    data = AuctionEvent._meta.get_field("data").get_db_prep_save
    rows = [(n, text, None if n % 3 == 0 else n * 10**11, n % 2 == 0,
             connection.ops.adapt_datetimefield_value(at + timedelta(microseconds=n)),
             data({"text": text, "n": n}, connection), enum_status)
            for n, text in enumerate(AWKWARD_TEXTS)]
    vendor = connection.vendor
    types = ("bigint", "text", "bigint", "boolean", "timestamp with time zone", "jsonb", "varchar(16)")
    if vendor != "postgresql":
        types = ("integer", "text", "integer", "bool", "datetime", "text", "varchar(16)")
    statement = (f"WITH v(k, t, n, b, at, j, s) AS ({sql.rows_source(types, sql.shape(len(rows), vendor), vendor)}) "
                 "SELECT k, t, n, b, at, j, s FROM v ORDER BY k")
    with connection.cursor() as cursor:
        cursor.execute(statement, sql.rows_params(rows, vendor))
        got = cursor.fetchall()
    assert [k for k, *_ in got] == list(range(len(AWKWARD_TEXTS)))
    assert [t for _, t, *_ in got] == AWKWARD_TEXTS
    assert [n for _, _, n, *_ in got] == [row[2] for row in rows]
    assert [bool(b) for *_, b, _at, _j, _s in got] == [row[3] for row in rows]
    if vendor == "postgresql":
        assert [at_ for *_, at_, _j, _s in got] == [at + timedelta(microseconds=n) for n in range(len(rows))]
        # Django reads jsonb as its text (its JSONField decodes it), so does this raw cursor.
        assert [json.loads(j) for *_, j, _s in got] == [{"text": text, "n": n} for n, text in enumerate(AWKWARD_TEXTS)]
    assert {s for *_, s in got} == {"live"}


def test_array_text_of_values_postgresql_is_not_told_about_is_left_to_psycopg():
    from decimal import Decimal

    assert sql.array_literal([1, None, True]) == "{1,NULL,t}"
    assert sql.array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'
    assert sql.array_literal([Decimal("1.5"), 2]) == [Decimal("1.5"), 2]


def test_hot_statements_are_prepared_once_per_connection_and_log_their_text(auctions):
    """PostgreSQL parses and plans a hot statement once per connection, not on every run: after
    a few decides' worth of lock statements, the session holds it prepared, once. Django's query
    log still shows each run's statement."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite caches its own")
    from auctions import services

    with CaptureQueriesContext(connection) as queries:
        for _ in range(4):
            with transaction.atomic():
                assert services._lock_auction(auctions[0].pk).pk == auctions[0].pk
    statement = services._lock_auction_sql("postgresql")
    assert [q["sql"] for q in queries.captured_queries if "FOR NO KEY UPDATE" in (q["sql"] or "")] == [statement] * 4
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [text for (text,) in cursor.fetchall()]
    assert len([text for text in prepared if "FOR NO KEY UPDATE" in text]) == 1
