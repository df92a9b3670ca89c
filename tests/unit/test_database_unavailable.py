"""Which errors mean "the store cannot be reached now" (503) and which are bugs (500)."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, ProgrammingError

from infrastructure.store import database_unavailable


def wrapped(error: BaseException, outer: type[Exception]) -> Exception:
    """``outer`` raised from ``error``, as the eventsourcing recorders do."""
    raised = outer(str(error))
    raised.__cause__ = error
    return raised


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection refused"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.InterfaceError("the connection is closed"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        wrapped(psycopg.OperationalError("server closed the connection"), OperationalError),
        wrapped(sqlite3.OperationalError("database is locked"), OperationalError),
    ],
)
def test_the_store_being_unreachable_is_recognised(error: BaseException) -> None:
    assert database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        wrapped(psycopg.errors.UniqueViolation("duplicate key"), IntegrityError),
        wrapped(psycopg.errors.UndefinedTable("no such table"), ProgrammingError),
        wrapped(sqlite3.OperationalError("no such table: x"), OperationalError),
    ],
)
def test_other_errors_are_not_taken_for_an_outage(error: BaseException) -> None:
    assert not database_unavailable(error)
