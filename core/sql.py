"""Small helpers for the hand-written SQL of the hot paths (intake, the decider's reads and writes).

Those statements join a table of parameter rows to a table: one statement for many rows, where
executemany would take a round trip per row or, on psycopg, a pipeline. Workers avoid pipelines:
a worker stopped mid-pipeline (SIGSTOP, a paused VM) leaves its PostgreSQL session waiting for
the rest of it, which PostgreSQL counts as "active", not "idle in transaction", so
WORKER_IDLE_IN_TRANSACTION_S never ends it and the auction's row lock and the bidders' account
locks stay held until the worker resumes (tasks/connections.py; the fault suite's
pause-bid-worker hung on it). `Writes` sends a transaction's writes as one statement instead."""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorDebugWrapper
from psycopg.types.json import Json, Jsonb


@contextlib.contextmanager
def cursor() -> Iterator[Any]:
    """`connection.cursor()` for the hot statements: on PostgreSQL one that binds parameters
    server-side, so that psycopg prepares each statement once per connection (the database's
    OPTIONS set prepare_threshold) and PostgreSQL parses and plans it once, not on every call.

    Django's own cursors bind client-side: every statement arrives as new text, to be parsed and
    planned again. For the decider's statements (a few kilobytes of CTEs) that was most of
    PostgreSQL's CPU per decide: planning the read took 0.57 ms and running it 0.15, the write
    0.55 ms to plan (EXPLAIN, warm session). The ORM keeps client-side binding: its statements'
    texts vary and are not hot, and some of its SQL is not valid with server-side parameters."""
    if connection.vendor != "postgresql":
        with connection.cursor() as plain:
            yield plain
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)
    wrapped = _LoggedCursor(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
    with wrapped:
        yield wrapped


class _LoggedCursor(CursorDebugWrapper):
    """Django's query log (DEBUG, tests' CaptureQueriesContext) of a prepared statement: its text
    with placeholders. Django would ask psycopg for the last query sent, which it does not keep
    when it ran a prepared one, and log None."""

    def execute(self, sql, params=None):
        with self.debug_sql(sql, params):
            return self._execute_with_wrappers(sql, params, many=False, executor=self._execute)


def typed(expression: str, field) -> str:
    """`expression` (a VALUES column) as `field`'s database type. PostgreSQL types a VALUES
    list's parameters as text unless told; SQLite would read type names as affinities (and
    turn datetimes into numbers), and needs no cast."""
    if connection.vendor != "postgresql":
        return expression
    return f"CAST({expression} AS {db_type(field)})"


def values_list(rows: int, columns: int) -> str:
    """`(%s, %s), (%s, %s)`: the placeholders of a VALUES list."""
    row = "(" + ", ".join(["%s"] * columns) + ")"
    return ", ".join([row] * rows)


def db_type(field) -> str:
    return field.rel_db_type(connection) if field.primary_key else field.db_type(connection)


def rows_source(types: tuple[str, ...], rows: int, vendor: str) -> str:
    """A table of parameter rows, for `WITH v(columns) AS (...)`, whose params `rows_params`
    makes. On PostgreSQL one array per column, unnested: the statement's text is the same for
    any number of rows, so psycopg converts it once (it caches 128 statements; with a text per
    row count, converting the intake's statements showed as ~13% of a web process's samples,
    though the benchmarks' throughput did not measurably change), and PostgreSQL is told each
    column's type (`types`). Elsewhere a VALUES list."""
    if vendor == "postgresql":
        return "SELECT * FROM unnest(" + ", ".join(f"CAST(%s AS {t}[])" for t in types) + ")"
    return "VALUES " + values_list(rows, len(types))


def rows_params(rows: list[tuple], vendor: str) -> list:
    if vendor == "postgresql":
        return [array_literal(column) for column in zip(*rows, strict=True)]
    return [value for row in rows for value in row]


def array_literal(values: tuple | list) -> str | list:
    """`values` as the text of a PostgreSQL array ('{1,2,NULL}'), for `CAST(%s AS type[])`; or
    the values as a list, for psycopg to adapt, when one of them is of a type not handled here.

    psycopg adapts a list client-side in Python, element by element (a dumper looked up, called
    and its output escaped for each): that was 17% of a bid worker's CPU and 9% of a web
    process's in the many-auctions benchmark, for the columns of the decider's and the intake's
    statements. A str parameter is quoted by libpq, and this text is built in one join."""
    try:
        return "{" + ",".join([(_ELEMENTS.get(type(v)) or _subclass(v))(v) for v in values]) + "}"
    except _Unhandled:
        return list(values)


class _Unhandled(Exception):
    pass


def _quoted(text: str) -> str:
    # Inside an array literal's double quotes only the backslash and the double quote are special.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json(value: Json | Jsonb) -> str:
    text = (value.dumps or json.dumps)(value.obj)
    return _quoted(text.decode() if isinstance(text, bytes) else text)


_ELEMENTS: dict[type, Any] = {
    int: str,
    bool: lambda v: "t" if v else "f",
    str: _quoted,
    type(None): lambda v: "NULL",
    # isoformat keeps the offset; a naive value is read in the session's time zone, as
    # psycopg's own adaptation of it would be.
    datetime.datetime: lambda v: '"' + v.isoformat() + '"',
    datetime.date: lambda v: '"' + v.isoformat() + '"',
    Json: _json,
    Jsonb: _json,
}


def _subclass(value: Any):
    """The element's renderer when its type is a subclass of a handled one (a model's choices
    are str or int enums)."""
    if isinstance(value, bool):
        return _ELEMENTS[bool]
    if isinstance(value, int):
        return lambda v: str(int(v))
    if isinstance(value, str):
        return lambda v: _quoted(str.__str__(v))
    for kind in (datetime.datetime, datetime.date, Json, Jsonb):
        if isinstance(value, kind):
            return _ELEMENTS[kind]
    raise _Unhandled


def shape(rows: int, vendor: str) -> int:
    """The row count a `rows_source` statement's text depends on: none on PostgreSQL."""
    return 0 if vendor == "postgresql" else rows


def update(model, fields: tuple[str, ...], keys: tuple[str, ...], rows: list[tuple], where: str = "",
           where_params: tuple = ()) -> tuple[str, list]:
    """(statement, params) that UPDATE `rows` of `model` in one statement: each row holds the
    values of `fields` then of `keys` (the columns that find its row); `where` adds conditions
    on the table's own columns, with `where_params`. Django's bulk_update builds a CASE per
    field and row: in the hot-auction profile that cost the bid worker more than deciding."""
    vendor = connection.vendor
    return (_update_sql(model, fields, keys, shape(len(rows), vendor), vendor, where),
            rows_params(rows, vendor) + list(where_params))


def insert(model, fields: tuple[str, ...], rows: list[tuple]) -> tuple[str, list]:
    """(statement, params) that INSERT `rows` (values of `fields`) of `model` in one statement."""
    vendor = connection.vendor
    return _insert_sql(model, fields, shape(len(rows), vendor), vendor), rows_params(rows, vendor)


@functools.lru_cache(maxsize=512)
def _update_sql(model, fields: tuple[str, ...], keys: tuple[str, ...], rows: int, vendor: str, where: str) -> str:
    meta, quote = model._meta, connection.ops.quote_name
    targets = [meta.pk if f == "pk" else meta.get_field(f) for f in (*fields, *keys)]
    columns = [quote(f.column) for f in targets]
    values = [typed(f"v.{c}", f) for c, f in zip(columns, targets, strict=True)]
    table = quote(meta.db_table)
    assignments = ", ".join(f"{c} = {v}" for c, v in zip(columns[:len(fields)], values, strict=False))
    matches = " AND ".join(f"{table}.{c} = {v}" for c, v in zip(columns[len(fields):], values[len(fields):],
                                                                strict=True))
    source = rows_source(tuple(db_type(f) for f in targets), rows, vendor)
    return (f"WITH v({', '.join(columns)}) AS ({source}) "
            f"UPDATE {table} SET {assignments} FROM v WHERE {matches}{f' AND {where}' if where else ''}")


@functools.lru_cache(maxsize=512)
def _insert_sql(model, fields: tuple[str, ...], rows: int, vendor: str) -> str:
    meta, quote = model._meta, connection.ops.quote_name
    targets = [meta.get_field(f) for f in fields]
    columns = ", ".join(quote(f.column) for f in targets)
    source = rows_source(tuple(db_type(f) for f in targets), rows, vendor)
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) {source}"


def columns(model, alias: str = "") -> str:
    """Every concrete column of `model`, in field order (what `instances` reads)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)


def instances(model, rows: list[tuple]) -> list:
    """`model` instances from rows of `columns(model)`, each value converted as the ORM's
    queries convert it (SQLite hands back datetimes as naive, booleans as integers)."""
    names, converters = _conversions(model, connection.vendor)
    out = []
    for row in rows:
        if converters:
            row = list(row)
            for i, expression, functions in converters:
                for convert in functions:
                    row[i] = convert(row[i], expression, connection)
        out.append(model.from_db(connection.alias, names, row))
    return out


@functools.lru_cache(maxsize=64)
def _conversions(model, vendor: str) -> tuple[list[str], list]:
    fields = model._meta.concrete_fields
    converters = []
    for i, field in enumerate(fields):
        expression = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        if functions:
            converters.append((i, expression, functions))
    return [f.attname for f in fields], converters


def in_list(rows: int) -> str:
    """`(%s, %s, %s)`: the placeholders of an IN list of `rows` values (at least one)."""
    return values_list(1, rows)


class Writes:
    """Statements one transaction must run, queued and then sent together by `flush`.

    On PostgreSQL `flush` sends them as one statement, each a data-modifying CTE (one round
    trip; the decider's writes were nine round trips, a third of a batch's time). Elsewhere they
    run one by one, in the order queued. So the statements must not depend on each other's
    effects: in one PostgreSQL statement they all see the same snapshot, and each row may be
    changed by one of them only (the queuers merge their changes per row; core.ledger does)."""

    def __init__(self) -> None:
        self._queued: list[tuple[str, list]] = []

    def add(self, statement: str, params: list) -> None:
        self._queued.append((statement, params))

    def flush(self) -> None:
        queued, self._queued = self._queued, []
        if not queued:
            return
        with cursor() as queries:
            if connection.vendor == "postgresql" and len(queued) > 1:
                queries.execute(_chained(tuple(statement for statement, _ in queued)),
                                [value for _, params in queued for value in params])
            else:
                for statement, params in queued:
                    queries.execute(statement, params)


@functools.lru_cache(maxsize=512)
def _chained(statements: tuple[str, ...]) -> str:
    # PostgreSQL runs every data-modifying CTE to completion whether or not it is read.
    ctes = ", ".join(f"w{n} AS ({statement})" for n, statement in enumerate(statements))
    return f"WITH {ctes} SELECT 1"
