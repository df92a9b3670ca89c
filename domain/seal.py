"""Tamper evidence: a digest of each stored event, chained in log order.

``event_digest`` is the SHA-256 of a stored event exactly as the store holds it
(its log position, originator id, version, topic and state bytes), so a changed
byte, a moved event or a changed topic changes it. ``chain`` folds the digests
in log order, from ``GENESIS``: the chain value at a position commits to every
event up to it. The seal projection records both for each event it reads; a
finalized invoice records the chain value at its cut, so rewriting any event it
folded (or any earlier one) is detected, and the per-event digests name the
event.
"""

from __future__ import annotations

import hashlib

GENESIS = "0" * 64


def event_digest(position: int, originator_id: str, version: int, topic: str, state: bytes) -> str:
    head = f"{position}\x1f{originator_id}\x1f{version}\x1f{topic}\x1f".encode()
    return hashlib.sha256(head + state).hexdigest()


def chain(previous: str, digest: str) -> str:
    return hashlib.sha256(f"{previous}{digest}".encode("ascii")).hexdigest()
