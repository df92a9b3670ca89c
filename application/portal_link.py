"""Customer portal links: a signed, expiring token that names one customer of one business.

A token is ``<payload>.<signature>``, both base64url without padding. The
payload is the JSON array ``[1, business_id, customer_id, expires, return_url]``
(``expires`` in whole seconds since the epoch, UTC); the signature is
HMAC-SHA256 under the server's portal secret over a domain tag and the payload,
so a token made for something else never verifies here. The token holds ids
and a time, nothing secret: it is the credential, its signature the proof.

The signature is checked first and in constant time, as the one spelling
this server writes (base64 has others for the same bytes); only a token that passes
is decoded, and only then is its expiry looked at, so an altered expiry is
refused as altered, never as expired. Time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from application.errors import InvalidRequestError, LedgerError

VERSION = 1
MAX_TOKEN_CHARS = 4096  # a longer token was not made here: refused before any work
MAX_RETURN_URL = 2048
MIN_SECRET_BYTES = 32
_TAG = b"ledger.portal-link/1."


class PortalLinkError(LedgerError):
    """The link is not one this server made, or it was changed since."""

    code = "portal_link_invalid"


class PortalLinkExpiredError(PortalLinkError):
    code = "portal_link_expired"


@dataclass(frozen=True, slots=True)
class PortalClaims:
    """What a valid link grants: a read-only view of one customer of one business."""

    business_id: str
    customer_id: str
    expires_at: datetime
    return_url: str | None = None


class PortalLinks:
    """Issues and opens portal tokens with one server secret and one lifetime."""

    __slots__ = ("_secret", "lifetime")

    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a portal secret needs at least {MIN_SECRET_BYTES} bytes")
        if lifetime <= timedelta(0):
            raise ValueError("a portal link's lifetime must be positive")
        self._secret = secret
        self.lifetime = lifetime

    def __repr__(self) -> str:  # never the secret, in a log line or a traceback
        return f"PortalLinks(lifetime={self.lifetime!r})"

    def issue(
        self, business_id: str, customer_id: str, now: datetime, return_url: str | None = None
    ) -> tuple[str, PortalClaims]:
        """A token valid for ``lifetime`` from ``now`` (to the second), and what it grants."""
        expires = int((now + self.lifetime).timestamp())
        claims = PortalClaims(business_id, customer_id, _moment(expires), return_url)
        payload = json.dumps(
            [VERSION, business_id, customer_id, expires, return_url],
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode("ascii")
        encoded = _encode(payload)
        return f"{encoded}.{_encode(self._sign(encoded))}", claims

    def open(self, token: str, now: datetime) -> PortalClaims:
        """The claims of a token this server signed and that has not expired; else
        ``PortalLinkExpiredError`` or ``PortalLinkError``."""
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise PortalLinkError("this link is not valid")
        encoded, _, signature = token.partition(".")
        # Compared as text: base64 spells bytes many ways, the token only one.
        if not hmac.compare_digest(signature, _encode(self._sign(encoded))):
            raise PortalLinkError("this link is not valid")
        claims = _claims(_decode(encoded))
        if now >= claims.expires_at:
            raise PortalLinkExpiredError("this link has expired")
        return claims

    def _sign(self, encoded: str) -> bytes:
        return hmac.new(self._secret, _TAG + encoded.encode("ascii"), hashlib.sha256).digest()


def check_return_url(raw: str | None) -> str | None:
    """An absolute http(s) URL with a host, or None; else a 422 naming ``return_url``."""
    if raw is None:
        return None
    problem = _return_url_problem(raw)
    if problem:
        raise InvalidRequestError(f"return_url {problem}", param="return_url")
    return raw


def _return_url_problem(raw: str) -> str | None:
    if len(raw) > MAX_RETURN_URL:
        return f"must be at most {MAX_RETURN_URL} characters"
    if not raw.isprintable() or any(c.isspace() for c in raw):
        return "must not hold spaces or control characters"
    try:
        parts = urlsplit(raw)
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an absolute http or https URL (https://example.com/account)"
    return None


def _claims(payload: bytes | None) -> PortalClaims:
    # Only a payload this server signed gets here; the checks guard a future format.
    try:
        version, business_id, customer_id, expires, return_url = json.loads(payload or b"")
    except (ValueError, TypeError):
        raise PortalLinkError("this link is not valid") from None
    if version != VERSION or not isinstance(expires, int):
        raise PortalLinkError("this link is not valid")
    try:
        expires_at = _moment(expires)
    except (OverflowError, ValueError, OSError):
        raise PortalLinkError("this link is not valid") from None
    return PortalClaims(str(business_id), str(customer_id), expires_at, return_url)


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
