"""``python -m api.cli``: the ``ledger`` command."""

from __future__ import annotations

from api.cli import main

raise SystemExit(main())
