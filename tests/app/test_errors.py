"""An unexpected exception still answers in the one error shape, with the request id."""

import httpx

from app.main import create_app
from tests.conftest import controlled_backend, make_settings


async def test_unexpected_error_is_a_json_500_with_the_request_id(database_url):
    app = create_app(make_settings(database_url), controlled_backend())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal error",
            "type": "server_error",  # OpenAI's error type
            "param": None,
            "request_id": "req-500",
        }
    }
