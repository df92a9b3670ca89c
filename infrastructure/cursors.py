"""Where a runtime loop's look at the log ended, kept across restarts.

A loop that reads the log on its own (not a projection: it writes no rows,
it takes decisions) keeps its position with one of the library's tracking
recorders, like a projection: ``application.live_credits.Cursor``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder


class TrackedCursor:
    def __init__(
        self, datastore: object, name: str, sqlite_path: Path, application_name: str
    ) -> None:
        self._application_name = application_name
        if isinstance(datastore, PostgresDatastore):
            self._recorder: PostgresTrackingRecorder | SQLiteTrackingRecorder = (
                PostgresTrackingRecorder(datastore, tracking_table_name=f"{name}_tracking")
            )
        else:
            self._recorder = SQLiteTrackingRecorder(
                SQLiteDatastore(str(sqlite_path), lock_timeout=30)
            )
        self._recorder.create_table()

    def position(self) -> int:
        return self._recorder.max_tracking_id(self._application_name) or 0

    def advance(self, position: int) -> None:
        with contextlib.suppress(IntegrityError):  # another process looked as far already
            self._recorder.insert_tracking(Tracking(self._application_name, position))
