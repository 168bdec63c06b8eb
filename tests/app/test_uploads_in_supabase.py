"""The API with its uploads in Supabase Storage (STORAGE_MODE=supabase, against the fake in
tests/supabase_storage.py): an image stored there and embedded by the real CLIP worker from
Supabase's signed URL; readiness naming Storage's refusal without the key; an upload to a
missing bucket refused whole."""

import pytest
from sqlalchemy import func, select

from app.models import Document, Image
from tests.app.test_api import assert_error
from tests.app.test_images import png
from tests.conftest import HMAC_SECRET, make_settings, start_api
from tests.supabase_storage import FakeSupabaseStorage, service_key


@pytest.fixture(scope="module")
def supabase():
    with FakeSupabaseStorage() as server:
        yield server
        assert server.violations == []


def settings_on(database_url: str, supabase: FakeSupabaseStorage, **overrides):
    values = {
        "storage_mode": "supabase",
        "supabase_url": supabase.url,
        "supabase_service_key": service_key(),
        "storage_prefix": "test",
        "signing_secret": HMAC_SECRET,
    }
    return make_settings(database_url, **values | overrides)


async def test_an_image_is_kept_in_supabase_and_embedded_from_its_signed_url(
    database_url, local_backend, supabase
):
    async for api in start_api(settings_on(database_url, supabase), local_backend):
        ready = await api.client.get("/readiness")
        assert ready.status_code == 200 and ready.json()["checks"]["storage"] == "ok"
        files = {"file": ("blue.png", png("blue"), "image/png")}
        response = await api.post("/v1/images", files=files, data={"source_id": "supa-blue"})
        assert response.status_code == 201, response.text
        image = response.json()
        async with api.app.state.engine.connect() as conn:
            query = select(Image.object_key, func.vector_dims(Image.embedding))
            key, dims = (await conn.execute(query.where(Image.id == image["id"]))).one()
        assert dims == 512
        name = f"test/{key}"
        assert supabase.buckets["uploads"][name].data == png("blue")
        # The CLIP worker read it through a signed URL: no key of ours reached it.
        assert f"POST /storage/v1/object/sign/uploads/{name}" in supabase.requests
        assert f"GET /storage/v1/object/sign/uploads/{name}" in supabase.requests

        assert (await api.delete(f"/v1/images/{image['id']}")).status_code == 204
        assert name not in supabase.names()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"supabase_bucket": "missing"}, "Bucket not found"),
        (
            {"supabase_service_key": service_key("another-projects-secret" * 2)},
            "Signature verification failed",
        ),
    ],
)
async def test_readiness_names_storages_refusal_and_uploads_store_nothing(
    database_url, local_backend, supabase, overrides, reason, caplog
):
    settings = settings_on(database_url, supabase, **overrides)
    async for api in start_api(settings, local_backend):
        response = await api.client.get("/readiness")
        assert response.status_code == 503
        assert response.json()["checks"]["storage"] == "failed"
        assert f"storage failed: Supabase Storage refused: {reason}" in caplog.text
        assert reason not in response.text
        assert settings.supabase_service_key.get_secret_value() not in caplog.text

        async with api.app.state.engine.connect() as conn:
            before = await conn.scalar(select(func.count()).select_from(Document))
        files = {"file": ("notes.txt", b"Some notes.", "text/plain")}
        upload = await api.post("/v1/documents", files=files, data={"source_id": "refused"})
        error = assert_error(upload, 503, "storage_unavailable")
        assert reason in error["message"]
        async with api.app.state.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(Document)) == before
