#!/usr/bin/env python3
"""Login latency with and without the second step of a two-factor login, against a running
server (not part of the test command).

    python3 scripts/login-latency.py http://127.0.0.1:18080 [N]

Registers N password-only accounts and N accounts with two-factor login (set up and confirmed
with codes computed here, as an authenticator app does), then times, one request at a time:
a password-only login; the first step of a two-factor login (the right password, answered 403
`mfa_required`); its second step (`POST /v1/auth/login/mfa` with the next step's TOTP code);
and the two steps together. Prints p50, p95 and mean in milliseconds. Run the server with the
per-IP limits off (RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=0, RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE=0):
every request comes from one IP. Standard library only; prints no token or password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import statistics
import struct
import sys
import time
import urllib.parse
import uuid


def totp(secret_b32: str, step: int) -> str:
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


class Client:
    def __init__(self, base: str):
        url = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)

    def post(self, path: str, body: dict, token: str | None = None) -> tuple[int, dict, float]:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        self.conn.request("POST", path, json.dumps(body), headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        return response.status, (json.loads(data) if data else {}), elapsed


def expect(status: int, wanted: int, what: str, body: dict) -> None:
    if status != wanted:
        sys.exit(f"{what}: {status} {body.get('code')}")


def account(client: Client) -> tuple[str, str]:
    suffix = uuid.uuid4().hex
    email, password = f"latency-{suffix}@example.com", f"correct-horse-battery-staple-{suffix[:12]}"
    status, body, _ = client.post("/v1/auth/register", {"email": email, "password": password})
    expect(status, 201, "register", body)
    return email, password


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"| {name} | {len(samples)} | {statistics.median(ordered):.1f} | {p95:.1f} | {statistics.fmean(ordered):.1f} |"


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18080"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    client = Client(base)
    plain, step1, step2, both = [], [], [], []
    for _ in range(n):
        email, password = account(client)
        status, body, elapsed = client.post("/v1/auth/login", {"email": email, "password": password})
        expect(status, 200, "login", body)
        plain.append(elapsed)

        email, password = account(client)
        status, body, _ = client.post("/v1/auth/login", {"email": email, "password": password})
        expect(status, 200, "login", body)
        access = body["access_token"]
        status, body, _ = client.post("/v1/users/me/mfa/totp", {"current_password": password}, access)
        expect(status, 200, "set-up", body)
        secret = body["secret"]
        step = int(time.time()) // 30
        status, body, _ = client.post("/v1/users/me/mfa/totp/confirm", {"code": totp(secret, step)}, access)
        expect(status, 200, "confirm", body)

        status, body, first = client.post("/v1/auth/login", {"email": email, "password": password})
        expect(status, 403, "first step", body)
        status, body, second = client.post(
            "/v1/auth/login/mfa", {"mfa_token": body["mfa_token"], "code": totp(secret, step + 1)}
        )
        expect(status, 200, "second step", body)
        step1.append(first)
        step2.append(second)
        both.append(first + second)
    print("| login | n | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|---|")
    print(row("password only (one request)", plain))
    print(row("two-factor, step 1 (password, 403 mfa_required)", step1))
    print(row("two-factor, step 2 (POST /v1/auth/login/mfa)", step2))
    print(row("two-factor, both steps", both))


if __name__ == "__main__":
    main()
