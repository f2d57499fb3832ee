"""Inserts below the ORM, for ingestion and the demo seed.

bulk_create spends most of its time building model instances and preparing
each value in Python; writing value rows directly is several times faster
(bench/ingest.py, seed_demo). Rows get their primary keys before they are
written, so rows of other tables in the same batch (tag links) can point at
them.
"""

from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import DateTimeField, DecimalField, Field, JSONField


def reserve_ids(model, count: int) -> list[int]:
    """`count` primary keys for new rows of `model`.

    PostgreSQL draws them from the table's sequence, safe beside concurrent
    writers. SQLite takes those after the highest used, which is safe only
    once the calling transaction holds SQLite's write lock (it has written).
    """
    table, pk = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", [table, pk, count]
            )
            return [value for (value,) in cursor.fetchall()]
        quote = connection.ops.quote_name
        # AUTOINCREMENT never reuses an id, even a deleted row's: start after both.
        cursor.execute(
            f"SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
            f"COALESCE((SELECT MAX({quote(pk)}) FROM {quote(table)}), 0))",
            [table],
        )
        last = cursor.fetchone()[0]
        return list(range(last + 1, last + 1 + count))


def select_in(parts: Sequence[tuple[str, str, Iterable, dict, Sequence[str]]]) -> list[tuple]:
    """Rows of several tables in one statement: for each part (table, key, keys, equal, columns),
    `SELECT <part index>, key, *columns FROM table WHERE key IN keys AND column = value ...` for
    each item of `equal`, joined by UNION ALL; every part has as many columns. Parts without
    keys are left out. The ORM spends ~3 ms building and compiling such a union of querysets
    that takes 0.5 ms to run (ingest's lookups, several in every request).
    """
    selects, params = [], []
    for i, (table, key, keys, equal, columns) in enumerate(parts):
        keys = list(keys)
        if not keys:
            continue
        where = [f"{key} IN ({', '.join(['%s'] * len(keys))})", *(f"{column} = %s" for column in equal)]
        selects.append(f"SELECT {i:d}, {', '.join([key, *columns])} FROM {table} WHERE {' AND '.join(where)}")
        params += [*keys, *equal.values()]
    if not selects:
        return []
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(selects), params)
        return cursor.fetchall()


def _converter(f: Field):
    # psycopg adapts ints, text, aware datetimes and Decimals itself; JSON needs Django's
    # adapter everywhere, and SQLite's driver also needs datetimes and decimals as text.
    kinds = (JSONField,) if connection.vendor == "postgresql" else (JSONField, DateTimeField, DecimalField)
    if isinstance(f, kinds):
        return lambda value: f.get_db_prep_save(value, connection)
    return None


def insert_rows(model, fields: Sequence[Field], rows: Iterable[Sequence]) -> None:
    """Write rows of Python values, one per field of `fields`, in order: COPY on PostgreSQL."""
    convert = [_converter(f) for f in fields]
    values = ([v if c is None else c(v) for v, c in zip(row, convert, strict=True)] for row in rows)
    quote = connection.ops.quote_name
    table, columns = quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields)
    # The raw psycopg cursor's errors must surface as Django's (IntegrityError drives ingest's retry).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})", list(values)
            )
