"""Portal links: signed, expiring, refused when changed in any way; return URLs checked."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.errors import InvalidRequestError
from application.portal_link import (
    PortalClaims,
    PortalLinkError,
    PortalLinkExpiredError,
    PortalLinks,
    check_return_url,
)

SECRET = bytes(range(32))
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def links(secret: bytes = SECRET, lifetime: timedelta = HOUR) -> PortalLinks:
    return PortalLinks(secret, lifetime)


def test_a_token_opens_to_the_claims_it_was_issued_with() -> None:
    token, issued = links().issue("biz", "cus_1", NOW, "https://example.com/back")
    assert links().open(token, NOW) == issued
    assert issued == PortalClaims("biz", "cus_1", NOW + HOUR, "https://example.com/back")


@given(
    business=st.text(min_size=1, max_size=40),
    customer=st.text(min_size=1, max_size=80),
)
def test_any_ids_round_trip(business: str, customer: str) -> None:
    token, issued = links().issue(business, customer, NOW)
    assert token.isascii()
    assert links().open(token, NOW).customer_id == customer == issued.customer_id


def test_the_expiry_is_the_lifetime_after_now_to_the_second() -> None:
    token, issued = links(lifetime=timedelta(seconds=90)).issue("biz", "cus_1", NOW)
    assert issued.expires_at == NOW + timedelta(seconds=90)
    assert links().open(token, NOW + timedelta(seconds=89)).customer_id == "cus_1"
    with pytest.raises(PortalLinkExpiredError, match="expired"):
        links().open(token, NOW + timedelta(seconds=90))


def test_every_one_character_change_is_refused_as_not_valid() -> None:
    token, _ = links().issue("biz", "cus_1", NOW, "https://example.com/")
    for index, original in enumerate(token):
        for replacement in {ALPHABET[(ALPHABET.find(original) + 1) % 64], "."}:
            altered = token[:index] + replacement + token[index + 1 :]
            if altered == token:
                continue
            with pytest.raises(PortalLinkError, match="not valid") as refused:
                links().open(altered, NOW)
            assert not isinstance(refused.value, PortalLinkExpiredError)


def test_an_altered_expiry_is_refused_as_not_valid_never_as_expired() -> None:
    token, _ = links().issue("biz", "cus_1", NOW)
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for expires in (claims[3] + 86_400, claims[3] - 86_400):  # later, and already past
        claims[3] = expires
        text = json.dumps(claims, separators=(",", ":")).encode()
        altered = base64.urlsafe_b64encode(text).decode().rstrip("=")
        with pytest.raises(PortalLinkError, match="not valid") as refused:
            links().open(f"{altered}.{signature}", NOW)
        assert not isinstance(refused.value, PortalLinkExpiredError)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token, _ = links(secret=b"another-secret-of-32-bytes-long!").issue("biz", "cus_1", NOW)
    with pytest.raises(PortalLinkError, match="not valid"):
        links().open(token, NOW)


@pytest.mark.parametrize("token", ["", ".", "abc", "a.b.c", "é.é", "x" * 5000])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(PortalLinkError, match="not valid"):
        links().open(token, NOW)


def test_the_secret_never_shows_in_the_repr() -> None:
    assert SECRET.hex() not in repr(links())
    assert str(SECRET) not in repr(links())


def test_a_short_secret_or_no_lifetime_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PortalLinks(b"short", HOUR)
    with pytest.raises(ValueError, match="positive"):
        PortalLinks(SECRET, timedelta(0))


@pytest.mark.parametrize(
    "url", ["https://example.com", "http://127.0.0.1:3000/account?x=1", "HTTPS://EXAMPLE.COM/"]
)
def test_an_http_return_url_is_kept(url: str) -> None:
    assert check_return_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://example.com/",
        "//example.com/",
        "https://",
        "https://exa mple.com/",
        "https://example.com/\n",
        "https://example.com/" + "a" * 3000,
    ],
)
def test_any_other_return_url_is_refused_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="return_url") as refused:
        check_return_url(url)
    assert refused.value.detail == {"param": "return_url"}
