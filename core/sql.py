"""Small helpers for the hand-written SQL of the hot paths (intake, the decider's writes).

Those statements join a VALUES list of parameters to a table: one statement for many rows,
where executemany would take a round trip per row or, on psycopg, a pipeline (see
auctions/services._update_rows for why the workers avoid pipelines)."""

from __future__ import annotations

from django.db import connection


def typed(expression: str, field) -> str:
    """`expression` (a VALUES column) as `field`'s database type. PostgreSQL types a VALUES
    list's parameters as text unless told; SQLite would read type names as affinities (and
    turn datetimes into numbers), and needs no cast."""
    if connection.vendor != "postgresql":
        return expression
    db_type = field.rel_db_type(connection) if field.primary_key else field.db_type(connection)
    return f"CAST({expression} AS {db_type})"


def values_list(rows: int, columns: int) -> str:
    """`(%s, %s), (%s, %s)`: the placeholders of a VALUES list."""
    row = "(" + ", ".join(["%s"] * columns) + ")"
    return ", ".join([row] * rows)
