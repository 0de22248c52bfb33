"""Schemathesis hooks of scripts/fuzz.sh: bearer tokens for the protected routes, obtained
from the running server, and a guard that keeps the run's own admin alive.

Tokens. Every operation with a `bearer` security requirement gets a token from the provider
below, fetched through the API itself:

- `/v1/admin/*`: the bootstrap admin's access token (POST /v1/auth/login);
- `/v1/users/me*` and `POST /v1/auth/logout`: the token of a user registered for the purpose
  (POST /v1/auth/register, then login). A new user each time, because these operations change
  the caller itself: a fuzzed PATCH /v1/users/me may change its email, and a logout ends its
  session, so a fixed account could not log in again.

Schemathesis replays a request once with a freshly fetched token when it answers 401
(`retry_on`, default [401]); so after a fuzzed logout (or logout-all) ended the session, the
next protected request logs in again and the protected routes keep being exercised beyond 401.

Guard. The stateful phase feeds ids from responses (a login's `user.id` included) into
PATCH/DELETE /v1/admin/users/{id}. Demoting, disabling or deleting the bootstrap admin (possible
once a fuzzed POST /v1/admin/users created a second admin) would leave the run without an admin
login, so those two operations never target the bootstrap admin's id: it is swapped for a
random UUID (404). The last-admin rule itself is covered by tests/api/admin.rs.

Rules a JSON Schema cannot state. `positive_data_acceptance` (ST202) expects every
schema-valid request to be accepted. Some of the service's rules are not expressible in the
document: the email syntax (RFC 5322 dot-atom local part, two or more domain labels, ...), the
password policy (zxcvbn strength, the breached-password list, the email's local part), the
validity of a reset token or of a two-factor code, and the authenticity of a pagination
cursor. Their refusals are documented 400s with their own codes, so a 400 `invalid_email`,
`weak_password`, `invalid_token` or `invalid_mfa_code`, or a 400 `malformed_request` for a request that carries a `cursor`, is not a
finding there. Any other 400 for schema-valid input (`malformed_request` for a well-formed
body, `validation_failed` for a value the document allows) still fails the run: that is the
document and the service disagreeing.

Reads FUZZ_BASE_URL, FUZZ_ADMIN_EMAIL, FUZZ_ADMIN_PASSWORD and FUZZ_ADMIN_ID (set by fuzz.sh).
Prints no token or password.
"""

from __future__ import annotations

import os
import uuid

import requests
import schemathesis

BASE_URL = os.environ["FUZZ_BASE_URL"].rstrip("/")
ADMIN_EMAIL = os.environ["FUZZ_ADMIN_EMAIL"]
ADMIN_PASSWORD = os.environ["FUZZ_ADMIN_PASSWORD"]
ADMIN_ID = os.environ["FUZZ_ADMIN_ID"]

PROTECTED = r"^/v1/(admin/|users/me|auth/logout$)"
TIMEOUT = 30


def _post(path: str, body: dict) -> dict:
    response = requests.post(f"{BASE_URL}{path}", json=body, timeout=TIMEOUT)
    if response.status_code // 100 != 2:
        # Status and the problem's code only: the body of a failed login holds no secret, but
        # keep the habit.
        code = response.headers.get("content-type", "")
        try:
            code = response.json().get("code", code)
        except ValueError:
            pass
        raise RuntimeError(f"POST {path} answered {response.status_code} ({code})")
    return response.json()


def _login(email: str, password: str) -> str:
    return _post("/v1/auth/login", {"email": email, "password": password})["access_token"]


def _fresh_user_token() -> str:
    suffix = uuid.uuid4().hex
    email = f"fuzz-caller-{suffix}@example.com"
    password = f"correct-horse-battery-staple-{suffix[:12]}"
    _post("/v1/auth/register", {"email": email, "password": password})
    return _login(email, password)


def _who(case, context) -> str:
    return "admin" if context.operation.path.startswith("/v1/admin/") else "user"


@schemathesis.auth(cache_by_key=_who).apply_to(path_regex=PROTECTED)
class BearerToken:
    """An access token per kind of caller, fetched again after a 401."""

    def get(self, case, context):
        if _who(case, context) == "admin":
            return _login(ADMIN_EMAIL, ADMIN_PASSWORD)
        return _fresh_user_token()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    if (
        operation.path == "/v1/admin/users/{id}"
        and operation.method.upper() in ("PATCH", "DELETE")
        and str((case.path_parameters or {}).get("id", "")).lower() == ADMIN_ID
    ):
        case.path_parameters["id"] = str(uuid.uuid4())


# Problem codes of rules that the document cannot express (see the module's doc).
UNEXPRESSIBLE_RULES = frozenset({"invalid_email", "weak_password", "invalid_token", "invalid_mfa_code"})


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202" or response.status_code != 400:
        return True
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return True
    if code in UNEXPRESSIBLE_RULES:
        return False
    return not (code == "malformed_request" and "cursor" in (case.query or {}))
