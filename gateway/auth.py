"""Who may open a session: API keys (stored only as SHA-256 digests) or HMAC-signed expiring tokens, passed as
`Authorization: Bearer …` or `?token=…`, and an origin allow-list for browsers. Pure: no I/O.

A token is `base64url(json {"sub", "exp"}) "." base64url(HMAC-SHA256(secret, payload))`; mint one with
`moodstream token`. With neither keys nor a secret configured, the gateway is open, and then it only binds to
loopback (see `check_bind`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass

from moodstream.settings import Settings


def hash_key(key: str) -> str:
    """The digest to configure for an API key (`MOODSTREAM_API_KEY_HASHES`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(secret: str, subject: str, ttl_s: float, now: float | None = None) -> str:
    payload = json.dumps({"sub": subject, "exp": int((now or time.time()) + ttl_s)}, separators=(",", ":")).encode()
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


@dataclass(frozen=True)
class Authenticator:
    key_hashes: frozenset[str] = frozenset()
    token_secret: str | None = None
    allowed_origins: frozenset[str] = frozenset()
    """Origins allowed to open sockets from a browser; empty: any while authentication is off (the gateway is on
    loopback then), only the gateway's own origin once it is on (non-browser clients send no origin)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        split = lambda text: frozenset(p.strip() for p in text.split(",") if p.strip())  # noqa: E731
        return cls(split(settings.api_key_hashes.lower()), settings.token_secret, split(settings.allowed_origins))

    @property
    def enabled(self) -> bool:
        return bool(self.key_hashes or self.token_secret)

    def check(
        self, authorization: str | None, query_token: str | None, origin: str | None, host: str | None = None
    ) -> str | None:
        """None when allowed, else the reason (sent to the client with close code 1008). `host` is the request's
        Host header: with authentication on and no allow-list, a browser may connect from that origin only."""
        if origin and not self.origin_allowed(origin, host):
            return f"origin {origin} is not allowed"
        if not self.enabled:
            return None
        credential = query_token
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value:
                return "Authorization must be 'Bearer <key or token>'"
            credential = value.strip()
        if not credential:
            return "credentials required: Authorization: Bearer … or ?token=…"
        if self.key_hashes and any(hmac.compare_digest(hash_key(credential), h) for h in self.key_hashes):
            return None
        if self.token_secret and "." in credential:
            return self._check_token(credential)
        return "invalid credentials"

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        if self.allowed_origins:
            return origin in self.allowed_origins
        if not self.enabled:
            return True
        return host is not None and origin.split("://", 1)[-1] == host

    def check_metrics(self, authorization: str | None) -> str | None:
        """None when `/metrics` may be read: always while authentication is off, else with the same credentials
        as a session (as a Bearer header: a scraper sends no query token)."""
        return self.check(authorization, None, None) if self.enabled else None

    def _check_token(self, token: str) -> str | None:
        payload_b64, _, signature_b64 = token.partition(".")
        try:
            payload, signature = _unb64(payload_b64), _unb64(signature_b64)
        except ValueError:
            return "malformed token"
        expected = hmac.new(self.token_secret.encode(), payload, hashlib.sha256).digest()  # type: ignore[union-attr]
        if not hmac.compare_digest(signature, expected):
            return "invalid token signature"
        try:
            expires = float(json.loads(payload)["exp"])
        except (ValueError, KeyError, TypeError):
            return "malformed token"
        if expires < time.time():
            return "token expired"
        return None


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: Authenticator) -> None:
    """Refuse to serve an open (unauthenticated) gateway beyond loopback."""
    if not auth.enabled and not is_loopback(host):
        raise SystemExit(
            f"refusing to listen on {host} without authentication: set MOODSTREAM_API_KEY_HASHES or "
            "MOODSTREAM_TOKEN_SECRET (or bind to 127.0.0.1)"
        )


class ResumeTokens:
    """Resume tokens: the session id, when the token expires, and an HMAC of both, so a client can only continue a
    session it was given, and only while the workers may still hold its checkpoint.

    Every gateway instance that may receive a resumed session needs the same secret (``MOODSTREAM_RESUME_SECRET``);
    ``moodstream up`` shares one with its children. Without one, each process draws its own and resume works only
    on the instance that issued the token.
    """

    def __init__(self, secret: str | None, ttl_s: float) -> None:
        self._key = (secret or secrets.token_hex(32)).encode()
        self.ttl_s = ttl_s

    def issue(self, session_id: str, now_s: float | None = None) -> str:
        expires = int((time.time() if now_s is None else now_s) + self.ttl_s)
        return f"{session_id}.{expires}.{self._sign(session_id, expires)}"

    def verify(self, token: str, now_s: float | None = None) -> str | None:
        """The session id the token was issued for, or None (forged, malformed or expired)."""
        rest, _, signature = token.rpartition(".")
        session_id, _, expires = rest.rpartition(".")
        if not session_id or not expires.isdigit():
            return None
        if not hmac.compare_digest(signature, self._sign(session_id, int(expires))):
            return None
        return session_id if (time.time() if now_s is None else now_s) <= int(expires) else None

    def _sign(self, session_id: str, expires: int) -> str:
        message = f"resume:{session_id}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
