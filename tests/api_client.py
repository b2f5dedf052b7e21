"""Helpers for API tests: auth headers, JSON posts, and the contract's error shape."""

from __future__ import annotations

import json

from core.tokens import access_token_issue


def bearer(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access_token_issue(user=user)['access']}"}


def post(client, path, body=None, *, raw: str | None = None, **headers):
    data = raw if raw is not None else json.dumps(body if body is not None else {})
    return client.post(path, data=data, content_type="application/json", **headers)


def assert_error(response, status: int, code: str) -> dict:
    """The contract's error: that status, JSON, {"error": {"code", "message", "details"?}}."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]
