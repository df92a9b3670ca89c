"""The ``ledger`` command: serve, keys create, demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import structlog
import uvicorn

from api.app import create_app
from api.demo import run_demo
from infrastructure.bootstrap import build, utc_now
from infrastructure.logging import configure_logging
from infrastructure.settings import ConfigError, Settings

log = structlog.get_logger("ledger.cli")


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as error:
        print(f"ledger: configuration error: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    container = build(settings)
    store = "postgresql" if settings.is_postgres else f"sqlite ({settings.sqlite_path})"
    log.info(
        "starting",
        host=args.host,
        port=args.port,
        store=store,
        bootstrap_key=settings.bootstrap_api_key is not None,
    )
    uvicorn.run(
        create_app(container),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    container = build(_settings())
    try:
        token = container.keys.create(args.business, args.scope, utc_now())
    except ValueError as error:
        print(f"ledger: {error}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        container.close()
    sys.stdout.write(f"{token}\n")
    sys.stderr.write(
        f"created a {args.scope} key for business {args.business!r}; "
        "it is shown once and stored only as a hash\n"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.host, args.port)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ledger", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (and its projections)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; printed once")
    create.add_argument("--business", required=True, help="the business the key acts for")
    create.add_argument("--scope", choices=["ingest", "admin"], default="admin")
    create.set_defaults(run=_keys_create)

    demo = commands.add_parser(
        "demo", help="start the service on the SQLite default and show it ingesting"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
