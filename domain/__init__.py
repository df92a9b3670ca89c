"""The ledger's domain: aggregates, their events and the pure rules around them.

Pure Python: no I/O, no clock (time is always passed in), no framework but
``eventsourcing.domain``.
"""
