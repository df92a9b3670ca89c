"""Settings, read once at start from the environment into a frozen struct."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

import msgspec

from application.delivery import RETRY_SCHEDULE

DEFAULT_DATABASE_URL = "sqlite:///var/ledger.sqlite"
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class ConfigError(Exception):
    """A setting is wrong; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = DEFAULT_DATABASE_URL
    bootstrap_api_key: str | None = None
    metrics_token: str | None = None  # when set, GET /metrics asks for it as a bearer token
    backdate_window: timedelta = timedelta(hours=1)
    future_skew: timedelta = timedelta(minutes=5)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    max_body_bytes: int = 8 * 1024 * 1024
    follower_poll_seconds: float = 0.05
    read_wait_seconds: float = 5.0
    invoice_grace: timedelta = timedelta(hours=1)
    billing_interval_seconds: float = 60.0
    live_credit_seconds: float = 1.0  # how often open cycles' credit is drawn; 0: never
    webhook_poll_seconds: float = 0.2  # how often due webhook messages are looked for; 0: never
    webhook_timeout_seconds: float = 10.0  # an attempt without a 2xx answer by then failed
    webhook_retry_schedule: tuple[float, ...] = RETRY_SCHEDULE  # seconds after each failure
    cors_origins: tuple[str, ...] = ()  # origins a browser may call the API from; none by default
    rate_limit_requests: float = 1000.0  # per key and process, requests a second; 0: no limit
    rate_limit_events: float = 100_000.0  # per key and process, ingested events a second; 0: none
    shutdown_seconds: float = 10.0  # on SIGTERM, how long requests in flight may take to finish
    portal_link_seconds: float = 3600.0  # how long a customer portal link opens its page
    dashboard_session_seconds: float = 8 * 3600.0  # how long a dashboard sign-in lasts

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///").removeprefix("sqlite://"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read ``LEDGER_*`` variables; raise ``ConfigError`` naming a bad one."""
        values: dict[str, object] = {}
        url = env.get("LEDGER_DATABASE_URL", "").strip()
        if url:
            values["database_url"] = _check_url(url)
        key = env.get("LEDGER_BOOTSTRAP_API_KEY", "").strip()
        if key:
            if len(key) < 16:
                raise ConfigError("LEDGER_BOOTSTRAP_API_KEY must be at least 16 characters")
            values["bootstrap_api_key"] = key
        values.update(_metrics_and_billing_values(env))
        for name, field in (
            ("LEDGER_BACKDATE_WINDOW", "backdate_window"),
            ("LEDGER_FUTURE_SKEW", "future_skew"),
            ("LEDGER_INVOICE_GRACE", "invoice_grace"),
        ):
            if raw := env.get(name, "").strip():
                values[field] = parse_duration(name, raw)
        if raw := env.get("LEDGER_LIVE_CREDIT_SECONDS", "").strip():
            try:
                values["live_credit_seconds"] = float(raw)
            except ValueError:
                raise ConfigError("LEDGER_LIVE_CREDIT_SECONDS must be seconds (0: never)") from None
        values.update(_webhook_values(env))
        values.update(_operating_values(env))
        if fmt := env.get("LEDGER_LOG_FORMAT", "").strip():
            if fmt not in ("auto", "json", "console"):
                raise ConfigError("LEDGER_LOG_FORMAT must be one of auto, json, console")
            values["log_format"] = fmt
        if level := env.get("LEDGER_LOG_LEVEL", "").strip().lower():
            if level not in ("debug", "info", "warning", "error"):
                raise ConfigError("LEDGER_LOG_LEVEL must be one of debug, info, warning, error")
            values["log_level"] = level
        return cls(**values)  # type: ignore[arg-type]


def _webhook_values(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, field in (
        ("LEDGER_WEBHOOK_POLL_SECONDS", "webhook_poll_seconds"),
        ("LEDGER_WEBHOOK_TIMEOUT_SECONDS", "webhook_timeout_seconds"),
    ):
        if raw := env.get(name, "").strip():
            values[field] = _seconds(name, raw)
    if raw := env.get("LEDGER_WEBHOOK_RETRY_SCHEDULE", "").strip():
        name = "LEDGER_WEBHOOK_RETRY_SCHEDULE"
        values["webhook_retry_schedule"] = tuple(
            _seconds(name, part.strip()) for part in raw.split(",")
        )
    return values


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def _operating_values(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if raw := env.get("LEDGER_CORS_ORIGINS", "").strip():
        origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ConfigError(
                    f"LEDGER_CORS_ORIGINS: {origin!r} is not an origin: give "
                    "scheme://host[:port] (https://app.example.com), comma-separated, or *"
                )
        values["cors_origins"] = origins
    for name, field in (
        ("LEDGER_RATE_LIMIT_REQUESTS", "rate_limit_requests"),
        ("LEDGER_RATE_LIMIT_EVENTS", "rate_limit_events"),
    ):
        if raw := env.get(name, "").strip():
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number a second (0: no limit)") from None
            if not 0 <= value <= 1e9:
                raise ConfigError(f"{name} must be from 0 (no limit) to 1e9 a second")
            values[field] = value
    if raw := env.get("LEDGER_SHUTDOWN_SECONDS", "").strip():
        values["shutdown_seconds"] = _seconds("LEDGER_SHUTDOWN_SECONDS", raw)
    if raw := env.get("LEDGER_PORTAL_LINK_SECONDS", "").strip():
        lifetime = _seconds("LEDGER_PORTAL_LINK_SECONDS", raw)
        if lifetime < 1:  # a link dead on arrival helps nobody
            raise ConfigError("LEDGER_PORTAL_LINK_SECONDS must be at least 1 second")
        values["portal_link_seconds"] = lifetime
    if raw := env.get("LEDGER_DASHBOARD_SESSION_SECONDS", "").strip():
        lifetime = _seconds("LEDGER_DASHBOARD_SESSION_SECONDS", raw)
        if not 60 <= lifetime <= 30 * 86400:
            raise ConfigError(
                "LEDGER_DASHBOARD_SESSION_SECONDS must be from 60 to 2592000 (30 days)"
            )
        values["dashboard_session_seconds"] = lifetime
    return values


def _metrics_and_billing_values(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if token := env.get("LEDGER_METRICS_TOKEN", "").strip():
        if len(token) < 16:
            raise ConfigError("LEDGER_METRICS_TOKEN must be at least 16 characters")
        values["metrics_token"] = token
    if raw := env.get("LEDGER_BILLING_INTERVAL", "").strip():
        interval = _seconds("LEDGER_BILLING_INTERVAL", raw)
        if interval <= 0:  # the loop waits this long between runs: 0 would spin
            raise ConfigError("LEDGER_BILLING_INTERVAL must be more than 0 seconds")
        values["billing_interval_seconds"] = interval
    return values


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be seconds, comma-separated where a list") from None
    if not 0 <= value <= 7 * 86400:
        raise ConfigError(f"{name}: seconds from 0 to a week")
    return value


def parse_duration(name: str, raw: str) -> timedelta:
    """Seconds (``3600``) or an ISO 8601 duration (``PT1H``, ``P400D``, ``P2W``)."""
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    match = _DURATION.match(raw.upper())
    if not match or raw.upper() in ("P", "PT"):
        raise ConfigError(
            f"{name}={raw!r} is not a duration: use seconds (3600) or ISO 8601 "
            "(PT1H, P400D; calendar years and months are ambiguous, give days)"
        )
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def _check_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return url
    if url.startswith("sqlite://") and url.removeprefix("sqlite://").strip("/"):
        return url
    raise ConfigError(
        f"LEDGER_DATABASE_URL={url!r} is not supported: use sqlite:///path/to/file.sqlite "
        "or postgresql://user@host:5432/dbname"
    )
