"""The HTTP API (Litestar + msgspec) and the ``ledger`` command line."""
