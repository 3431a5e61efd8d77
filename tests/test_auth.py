"""Authentication: API keys (hashed), HMAC tokens, origin allow-list; open gateways stay on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from moodstream.broker.embedded import free_port
from moodstream.gateway.auth import Authenticator, hash_key, is_loopback, mint_token
from tests.conftest import Stack, process_env, spawn, stop, wait_ready

SECRET = "test-secret"
AUTH = Authenticator(frozenset({hash_key("k-123")}), SECRET, frozenset({"https://app.example"}))


def test_keys_tokens_and_origins() -> None:
    assert AUTH.check("Bearer k-123", None, None) is None
    assert AUTH.check(None, "k-123", "https://app.example") is None
    assert AUTH.check(None, mint_token(SECRET, "alice", 60), None) is None
    assert AUTH.check(None, None, None) == "credentials required: Authorization: Bearer … or ?token=…"
    assert AUTH.check("Bearer nope", None, None) == "invalid credentials"
    assert AUTH.check("Basic abc", None, None) is not None
    assert AUTH.check(None, mint_token("other-secret", "eve", 60), None) == "invalid token signature"
    assert AUTH.check(None, mint_token(SECRET, "bob", -1), None) == "token expired"
    assert AUTH.check("Bearer k-123", None, "https://evil.example") == "origin https://evil.example is not allowed"
    assert Authenticator().check(None, None, None) is None  # open (loopback only)


def test_with_authentication_on_and_no_allow_list_a_browser_may_connect_from_the_gateways_own_origin_only() -> None:
    keys_only = Authenticator(frozenset({hash_key("k-123")}))
    assert keys_only.check("Bearer k-123", None, "https://gw.example:8443", "gw.example:8443") is None
    assert keys_only.check("Bearer k-123", None, "https://evil.example", "gw.example:8443") is not None
    assert keys_only.check("Bearer k-123", None, None, "gw.example:8443") is None  # not a browser: no origin
    assert Authenticator().check(None, None, "https://any.example", "127.0.0.1:8000") is None  # open: loopback only
    assert keys_only.check_metrics(None) is not None and keys_only.check_metrics("Bearer k-123") is None
    assert Authenticator().check_metrics(None) is None


def test_open_gateway_refuses_to_bind_beyond_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    env = process_env("127.0.0.1:1")
    result = subprocess.run(
        [sys.executable, "-m", "moodstream", "gateway", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "without authentication" in result.stderr


async def first_messages(url: str, **kwargs: object) -> tuple[list[dict], int | None]:
    messages: list[dict] = []
    async with websockets.connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        try:
            await ws.send(json.dumps({"type": "start"}))  # a refused client may already be closed here
        except websockets.ConnectionClosed:
            pass
        try:
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                if messages[-1]["type"] == "session.started":
                    await ws.send(json.dumps({"type": "end"}))
        except websockets.ConnectionClosed:
            pass
    return messages, ws.close_code


async def test_gateway_enforces_credentials_and_origins(stack: Stack) -> None:
    port = free_port()
    env = process_env(
        stack.bootstrap,
        MOODSTREAM_API_KEY_HASHES=hash_key("k-123"),
        MOODSTREAM_TOKEN_SECRET=SECRET,
        MOODSTREAM_ALLOWED_ORIGINS="https://app.example",
    )
    gateway = spawn(["gateway", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [gateway])
        url = f"ws://127.0.0.1:{port}/ws/analyze"
        refused, code = await first_messages(url)
        assert code == 1008 and refused[0]["code"] == "unauthorized"
        refused, code = await first_messages(url, additional_headers={"Authorization": "Bearer k-123"},
                                             origin="https://evil.example")  # fmt: skip
        assert code == 1008 and "origin" in refused[0]["message"]
        ok, code = await first_messages(url, additional_headers={"Authorization": "Bearer k-123"})
        assert ok[0]["type"] == "session.started" and ok[-1]["type"] == "session.ended" and code == 1000
        token = mint_token(SECRET, "test", 60)
        ok, code = await first_messages(f"{url}?token={token}", origin="https://app.example")
        assert ok[0]["type"] == "session.started" and code == 1000
        expired = mint_token(SECRET, "test", -5, now=time.time())
        refused, code = await first_messages(f"{url}?token={expired}")
        assert code == 1008 and refused[0]["message"] == "token expired"
        http = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{http}/metrics")).status_code == 401  # metrics are behind the same keys
            scraped = await client.get(f"{http}/metrics", headers={"Authorization": "Bearer k-123"})
            assert scraped.status_code == 200 and "moodstream" in scraped.text
            page = await client.get(http)
        assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "script-src 'self';" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    finally:
        stop([gateway])


@pytest.mark.parametrize("command", [["hash-key", "abc"]])
def test_hash_key_command(command: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "moodstream", *command], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hash_key("abc")


def test_a_resume_token_names_its_session_until_it_expires_and_cannot_be_altered() -> None:
    from moodstream.gateway.auth import ResumeTokens

    tokens = ResumeTokens("secret", ttl_s=100.0)
    token = tokens.issue("abc123", now_s=1_000.0)
    assert tokens.verify(token, now_s=1_050.0) == "abc123"
    assert tokens.verify(token, now_s=1_101.0) is None  # expired: the workers may have forgotten its checkpoint
    session, expires, signature = token.split(".")
    assert tokens.verify(f"{session}.{int(expires) + 1000}.{signature}", now_s=1_050.0) is None  # longer life: forged
    assert tokens.verify(f"other.{expires}.{signature}", now_s=1_050.0) is None
    assert ResumeTokens("another secret", ttl_s=100.0).verify(token, now_s=1_050.0) is None
    assert tokens.verify("garbage", now_s=1_050.0) is None
