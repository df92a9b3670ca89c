"""A read model whose tables an older version made: dropped and rebuilt from the log.

Projections are disposable: every row follows from the log. So when a new
version needs a column a view's existing table lacks, the view is not altered
in place; its tables are dropped and its position forgotten (as ``ledger
projections rebuild NAME`` does), and the projector builds it again from the
start of the log. Other views keep their rows and positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from infrastructure.sql import tuples

log = structlog.get_logger(__name__)


def lacking_columns(store: Any, expected: Mapping[str, Sequence[str]]) -> list[str]:
    """``table.column`` for each expected column an existing table lacks (a table not
    made yet lacks nothing: it will be made whole)."""
    lacking: list[str] = []
    with store.datastore.transaction(commit=False) as curs:
        for table, columns in expected.items():
            present = _columns(curs, table, postgres=store.is_postgres)
            if present:
                lacking += [f"{table}.{c}" for c in columns if c not in present]
    return lacking


def report_outdated(view: str, lacking: Sequence[str]) -> None:
    log.warning("projection_outdated_rebuilding", projection=view, lacking=list(lacking))


def _columns(curs: Any, table: str, *, postgres: bool) -> set[str]:
    if postgres:
        curs.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = %s AND table_schema = current_schema()",
            (table,),
        )
        return {str(row[0]) for row in tuples(curs)}
    curs.execute(f"PRAGMA table_info({table})")
    return {str(row[1]) for row in tuples(curs)}
