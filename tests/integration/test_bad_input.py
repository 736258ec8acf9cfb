"""Bad input gets OpenAI's error shape and the right status, and the gateway keeps serving."""

import time

import aiohttp
import pytest
import sqlalchemy as sa

from tests.support.gateway import running_gateway

POLICY = """
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
  other: {deployments: [{provider: demo, model: mock-2}]}
teams:
  demo: {models: [m]}
"""
GOOD = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway(tmp_path, POLICY, max_body_bytes=4096) as gateway:
        gateway.http = aiohttp.ClientSession()
        gateway.auth = {"authorization": f"Bearer {await gateway.token()}"}
        yield gateway
        await gateway.http.close()


async def post(gw, data, headers=None, path="/chat/completions", auth=True):
    sent = {**(gw.auth if auth else {}), **(headers or {})}
    if isinstance(data, dict | list):
        request = gw.http.post(gw.base_url + path, json=data, headers=sent)
    else:
        request = gw.http.post(gw.base_url + path, data=data, headers=sent)
    async with request as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, await response.json(content_type=None)


async def still_serving(gw):
    status, _, body = await post(gw, GOOD)
    assert status == 200, body


def assert_error(body, type_, code=None, param=None):
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert error["code"] == code
    assert error["param"] == param
    assert "Traceback" not in error["message"]


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("data", "headers", "param", "code", "fragment"),
    [
        (b'{"model": "m", ', JSON, None, None, "could not parse the JSON"),
        (b"[1, 2]", JSON, None, None, "must be a JSON object"),
        (b"", JSON, None, None, "empty"),
        ({"messages": [{"role": "user", "content": "x"}]}, None, "model", None, "Missing required"),
        ({"model": 5, "messages": []}, None, "model", "invalid_type", "expected a string"),
        ({"model": "m", "messages": "hi"}, None, "messages", "invalid_type", "array of messages"),
        ({"model": "m", "messages": []}, None, "messages", "empty_array", "empty array"),
        ({"model": "m", "messages": ["hi"]}, None, "messages[0]", None, "'role'"),
        ({**GOOD, "stream": "yes"}, None, "stream", "invalid_type", "boolean"),
        ({**GOOD, "stream_options": []}, None, "stream_options", "invalid_type", "object"),
    ],
    ids=[
        "invalid-json",
        "not-an-object",
        "empty-body",
        "missing-model",
        "model-not-a-string",
        "messages-not-a-list",
        "messages-empty",
        "message-not-an-object",
        "stream-not-boolean",
        "stream-options-not-object",
    ],
)
async def test_malformed_requests_get_400_naming_the_field(
    gw, data, headers, param, code, fragment
):
    """OpenAI's codes: invalid_type for a wrong type, empty_array for an empty array."""
    status, _, body = await post(gw, data, headers)
    assert status == 400
    assert_error(body, "invalid_request_error", code=code, param=param)
    assert fragment in body["error"]["message"]
    await still_serving(gw)


async def test_wrong_content_type_is_refused(gw):
    status, _, body = await post(
        gw, b"model=m", {"content-type": "application/x-www-form-urlencoded"}
    )
    assert status == 400
    assert_error(body, "invalid_request_error", "unsupported_content_type")
    await still_serving(gw)


async def test_body_over_the_limit_is_413(gw):
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}
    status, _, body = await post(gw, big)
    assert status == 413
    assert_error(body, "invalid_request_error", "request_too_large")
    await still_serving(gw)


async def test_body_over_the_limit_without_content_length_is_413(gw):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    status, _, _ = await post(gw, chunks(), JSON)
    assert status == 413
    await still_serving(gw)


async def test_unknown_model_is_404_model_not_found(gw):
    status, _, body = await post(gw, {**GOOD, "model": "nope"})
    assert status == 404
    assert_error(body, "invalid_request_error", "model_not_found", "model")


async def test_a_model_outside_the_teams_allow_list_is_403(gw):
    status, _, body = await post(gw, {**GOOD, "model": "other"})
    assert status == 403
    assert_error(body, "permission_error", "model_not_allowed", "model")


async def test_no_token_is_401_with_a_bearer_challenge(gw):
    status, headers, body = await post(gw, GOOD, auth=False)
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="llm-gateway"'
    assert_error(body, "authentication_error", "invalid_api_key")


# Basic credentials and an empty Bearer token send no token: test_auth_challenge.py.
@pytest.mark.parametrize("value", ["Bearer garbage", "Bearer a.b.c"])
async def test_a_bad_token_is_401_invalid_token(gw, value):
    status, headers, body = await post(gw, GOOD, {"authorization": value}, auth=False)
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert_error(body, "authentication_error", "invalid_api_key")
    await still_serving(gw)


async def test_authentication_comes_before_parsing(gw):
    """An anonymous caller learns nothing about the body's problems."""
    status, _, _ = await post(gw, b"{not json", JSON, auth=False)
    assert status == 401


async def test_a_token_without_the_invoke_scope_is_403(gw):
    token = await gw.token(scopes=["gateway:finance"])
    status, headers, body = await post(gw, GOOD, {"authorization": f"Bearer {token}"}, auth=False)
    assert status == 403
    assert_error(body, "permission_error", "insufficient_scope")
    assert 'error="insufficient_scope"' in headers["www-authenticate"]


async def test_a_token_for_a_team_not_in_the_policy_is_401(gw):
    token = await gw.token(team="ghosts")
    status, _, _ = await post(gw, GOOD, {"authorization": f"Bearer {token}"}, auth=False)
    assert status == 401


async def test_an_expired_token_is_401(gw):
    token = await gw.token(ttl_s=60, issued_at=time.time() - 3600)
    status, headers, body = await post(gw, GOOD, {"authorization": f"Bearer {token}"}, auth=False)
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"]
    assert "expired" in body["error"]["message"]


async def test_unknown_paths_and_methods_are_openai_shaped(gw):
    async with gw.http.get(gw.base_url + "/nothing-here", headers=gw.auth) as response:
        assert response.status == 404
        assert_error(await response.json(), "invalid_request_error", "not_found")
    async with gw.http.get(gw.base_url + "/chat/completions", headers=gw.auth) as response:
        assert response.status == 405
        assert_error(await response.json(), "invalid_request_error", "method_not_allowed")


async def test_embeddings_cannot_stream(gw):
    status, _, body = await post(
        gw, {"model": "m", "input": "x", "stream": True}, path="/embeddings"
    )
    assert status == 400
    assert body["error"]["param"] == "stream"


async def test_health_and_readiness(gw):
    async with gw.http.get(gw.origin + "/healthz") as response:
        assert response.status == 200
    async with gw.http.get(gw.origin + "/readyz") as response:
        assert response.status == 200
        assert (await response.json())["checks"] == {"policy": "ok", "database": "ok"}


async def test_a_database_without_the_gateways_schema_is_not_ready(gw):
    """A database recreated empty answers queries, but nothing would work: 503."""
    async with gw.services.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE alembic_version RENAME TO alembic_version_gone"))
    try:
        async with gw.http.get(gw.origin + "/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"]["database"].startswith("error: ")
    finally:
        async with gw.services.engine.begin() as conn:
            await conn.execute(
                sa.text("ALTER TABLE alembic_version_gone RENAME TO alembic_version")
            )
    async with gw.http.get(gw.origin + "/readyz") as response:
        assert response.status == 200
