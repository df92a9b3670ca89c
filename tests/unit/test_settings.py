from __future__ import annotations

from datetime import timedelta

import pytest

from infrastructure.settings import DEFAULT_DATABASE_URL, ConfigError, Settings


def test_defaults_need_no_configuration() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.backdate_window == timedelta(hours=1)
    assert settings.future_skew == timedelta(minutes=5)
    assert not settings.is_postgres


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PT1H", timedelta(hours=1)),
        ("P400D", timedelta(days=400)),
        ("P2W", timedelta(weeks=2)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("3600", timedelta(hours=1)),
        ("pt90s", timedelta(seconds=90)),
    ],
)
def test_durations_are_iso_8601_or_seconds(raw: str, expected: timedelta) -> None:
    assert Settings.from_env({"LEDGER_BACKDATE_WINDOW": raw}).backdate_window == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LEDGER_BACKDATE_WINDOW": "P1M"}, "LEDGER_BACKDATE_WINDOW"),
        ({"LEDGER_FUTURE_SKEW": "soon"}, "LEDGER_FUTURE_SKEW"),
        ({"LEDGER_DATABASE_URL": "mysql://x"}, "LEDGER_DATABASE_URL"),
        ({"LEDGER_BOOTSTRAP_API_KEY": "short"}, "LEDGER_BOOTSTRAP_API_KEY"),
        ({"LEDGER_LOG_FORMAT": "xml"}, "LEDGER_LOG_FORMAT"),
        ({"LEDGER_CORS_ORIGINS": "app.example.com"}, "LEDGER_CORS_ORIGINS"),
        ({"LEDGER_CORS_ORIGINS": "https://a.example/path"}, "LEDGER_CORS_ORIGINS"),
        ({"LEDGER_RATE_LIMIT_REQUESTS": "many"}, "LEDGER_RATE_LIMIT_REQUESTS"),
        ({"LEDGER_RATE_LIMIT_EVENTS": "-1"}, "LEDGER_RATE_LIMIT_EVENTS"),
        ({"LEDGER_SHUTDOWN_SECONDS": "soon"}, "LEDGER_SHUTDOWN_SECONDS"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_postgres_urls_are_recognised() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/ledger"
    assert Settings.from_env({"LEDGER_DATABASE_URL": url}).is_postgres


def test_operating_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "LEDGER_CORS_ORIGINS": "https://app.example.com, http://127.0.0.1:3000/",
            "LEDGER_RATE_LIMIT_REQUESTS": "50",
            "LEDGER_RATE_LIMIT_EVENTS": "0",
            "LEDGER_SHUTDOWN_SECONDS": "3",
        }
    )
    assert settings.cors_origins == ("https://app.example.com", "http://127.0.0.1:3000")
    assert settings.rate_limit_requests == 50
    assert settings.rate_limit_events == 0
    assert settings.shutdown_seconds == 3


def test_no_origin_is_allowed_and_limits_are_generous_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.cors_origins == ()
    assert settings.rate_limit_requests == 1000
    assert settings.rate_limit_events == 100_000


def test_a_portal_link_lasts_an_hour_unless_set() -> None:
    assert Settings.from_env({}).portal_link_seconds == 3600
    assert Settings.from_env({"LEDGER_PORTAL_LINK_SECONDS": "900"}).portal_link_seconds == 900


@pytest.mark.parametrize("raw", ["0", "0.5", "soon", "-1", "700000"])
def test_a_portal_link_lifetime_below_a_second_or_above_a_week_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="LEDGER_PORTAL_LINK_SECONDS"):
        Settings.from_env({"LEDGER_PORTAL_LINK_SECONDS": raw})
