"""The event log as a stream of lines: written from a log, read back checked.

Format ``ledger-events`` version 1, NDJSON, one JSON object a line:

- a header: ``{"type":"header","format":"ledger-events","version":1,
  "application":"ledger","head":N}``, ``head`` the last position exported;
- one line per stored event, in log order: ``{"type":"event","position":...,
  "originator_id":...,"originator_version":...,"topic":...,"state":...}``,
  ``position`` the notification id and ``state`` the stored bytes as a JSON
  string of their exact UTF-8 text (``state_base64`` instead when they are
  not UTF-8, e.g. a cipher's output);
- a trailer: ``{"type":"trailer","count":N,"sha256":...}``, the SHA-256 of
  every byte before it (header and event lines, newlines included).

The reader checks the stream as it goes and the trailer after the last event,
so a store that writes what it yields in one transaction, committed after the
last, never keeps a truncated or edited file (``infrastructure.export``).
Memory is one batch, whatever the size of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO
from uuid import UUID

import msgspec
from eventsourcing.application import Application
from eventsourcing.persistence import Notification

FORMAT = "ledger-events"
VERSION = 1
BATCH = 5000

Progress = Callable[[int, int], None]  # (events so far, position reached)


class TransferError(Exception):
    """An export cannot be written or read into this store; nothing was changed."""


class StoreNotEmptyError(TransferError):
    """Import goes into an empty store only."""


class InvalidExportError(TransferError):
    """Not a whole, unaltered export of this format and application."""


class Header(msgspec.Struct, tag="header", tag_field="type", forbid_unknown_fields=True):
    format: str
    version: int
    application: str
    head: int


class EventLine(
    msgspec.Struct, tag="event", tag_field="type", forbid_unknown_fields=True, omit_defaults=True
):
    position: Annotated[int, msgspec.Meta(ge=1)]
    originator_id: UUID
    originator_version: int
    topic: str
    state: str | None = None
    state_base64: bytes | None = None

    def stored_state(self) -> bytes:
        if self.state is not None:
            return self.state.encode()
        if self.state_base64 is not None:
            return self.state_base64
        raise InvalidExportError(f"the event at position {self.position} has no state")


class Trailer(msgspec.Struct, tag="trailer", tag_field="type", forbid_unknown_fields=True):
    count: int
    sha256: str


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Header | EventLine | Trailer)


@dataclass(frozen=True, slots=True)
class TransferSummary:
    count: int
    head: int
    sha256: str


def export_events(
    app: Application[Any], out: BinaryIO, on_batch: Progress | None = None, batch: int = BATCH
) -> TransferSummary:
    """Write ``app``'s log up to its current head to ``out``."""
    recorder = app.recorder
    head = recorder.max_notification_id() or 0
    digest = hashlib.sha256()
    first = _ENCODER.encode(Header(FORMAT, VERSION, app.name, head)) + b"\n"
    digest.update(first)
    out.write(first)
    count = after = 0
    while after < head:
        notifications = recorder.select_notifications(
            after, batch, stop=head, inclusive_of_start=False
        )
        if not notifications:
            break
        chunk = bytearray()
        for notification in notifications:
            _ENCODER.encode_into(_event_line(notification), chunk, -1)
            chunk += b"\n"
        digest.update(chunk)
        out.write(chunk)
        count += len(notifications)
        after = notifications[-1].id
        if on_batch is not None:
            on_batch(count, after)
    out.write(_ENCODER.encode(Trailer(count, digest.hexdigest())) + b"\n")
    return TransferSummary(count, head, digest.hexdigest())


def _event_line(notification: Notification) -> EventLine:
    state = notification.state
    line = EventLine(
        notification.id,
        _uuid(notification.originator_id),
        notification.originator_version,
        notification.topic,
    )
    try:
        line.state = state.decode()
    except UnicodeDecodeError:
        line.state_base64 = state
    return line


def _uuid(originator_id: UUID | str) -> UUID:
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


class ExportReader:
    """Reads an export line by line, checking it as it goes.

    The header is read at once. ``events()`` yields the event lines in order and,
    after the last one, checks the trailer (count, SHA-256, head) and that nothing
    follows it; any fault raises ``InvalidExportError`` naming the line.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._digest = hashlib.sha256()
        self._line = 1
        first = source.readline()
        line = self._decode(first) if first else None
        if not isinstance(line, Header) or line.format != FORMAT:
            raise InvalidExportError(f"not a {FORMAT} export: its first line is no header")
        if line.version != VERSION:
            raise InvalidExportError(
                f"{FORMAT} version {line.version} is not supported (this ledger reads {VERSION})"
            )
        self.header = line
        self._digest.update(first)
        self.summary: TransferSummary | None = None

    def events(self) -> Iterator[EventLine]:
        count = last = 0
        for raw in self._source:
            self._line += 1
            line = self._decode(raw)
            if isinstance(line, Trailer):
                self._finish(line, count, last)
                return
            if isinstance(line, Header):
                raise InvalidExportError(f"line {self._line}: a second header")
            if line.position <= last:
                raise InvalidExportError(
                    f"line {self._line}: position {line.position} does not follow {last}"
                )
            self._digest.update(raw)
            count, last = count + 1, line.position
            yield line
        raise InvalidExportError(
            f"truncated: the export ends at line {self._line} without its trailer"
        )

    def _finish(self, trailer: Trailer, count: int, last: int) -> None:
        if trailer.count != count:
            raise InvalidExportError(f"the trailer counts {trailer.count} events, the file {count}")
        if trailer.sha256 != self._digest.hexdigest():
            raise InvalidExportError("the SHA-256 of the lines does not match the trailer's")
        if last != self.header.head:
            raise InvalidExportError(f"the header's head is {self.header.head}, the last {last}")
        if self._source.read(1):
            raise InvalidExportError(f"line {self._line + 1}: data after the trailer")
        self.summary = TransferSummary(count, last, trailer.sha256)

    def _decode(self, raw: bytes) -> Header | EventLine | Trailer:
        try:
            line: Header | EventLine | Trailer = _DECODER.decode(raw)
        except msgspec.DecodeError as error:
            raise InvalidExportError(f"line {self._line}: {error}") from None
        return line
