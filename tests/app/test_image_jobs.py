"""Image generation in a job (`?async=true`): the worker uploads by signed URLs made when its
part is sent, CLIP embeds the images in a second stage, and the images are kept as the tenant's
and read by `GET /v1/images/{id}/content`. In a module of its own: another API's job poller on
the same database (with other storage) would take its jobs."""

import asyncio
import io

from PIL import Image

from tests.conftest import Api


async def job_of(api: Api, job_id: str) -> dict:
    for _ in range(120):  # a poll a second: under the rate limit
        job = (await api.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(1)
    raise AssertionError(f"job {job_id} did not end: {job}")


async def test_an_async_generation_is_a_job_whose_images_are_kept(served_api):
    body = {"prompt": "a red car", "n": 2, "steps": 2, "embed": True, "output_format": "jpeg"}
    key = {"Idempotency-Key": "red-car-1"}
    response = await served_api.post("/v1/images/generations?async=true", json=body, headers=key)
    assert response.status_code == 202, response.text
    job = await job_of(served_api, response.json()["job_id"])
    assert (job["kind"], job["status"]) == ("imagegen", "succeeded"), job
    result = job["result"]
    assert result["size"] == "256x256" and len(result["data"]) == 2
    for datum in result["data"]:
        content = await served_api.get(f"/v1/images/{datum['id']}/content")
        assert content.status_code == 307
        signed = await served_api.client.get(content.headers["location"])  # no key needed
        picture = Image.open(io.BytesIO(signed.content))
        assert (picture.format, picture.size) == ("JPEG", (256, 256))
        image = (await served_api.get(f"/v1/images/{datum['id']}")).json()
        assert image["metadata"]["generated"]["seed"] == datum["seed"]
    hits = await served_api.get("/v1/search", params={"q": "a red car", "kind": "image", "k": 50})
    found = {hit["document_id"] for hit in hits.json()["hits"]}
    assert {datum["id"] for datum in result["data"]} <= found  # embedded in the second stage
    again = await served_api.post("/v1/images/generations?async=true", json=body, headers=key)
    assert again.json()["job_id"] == job["job_id"]  # the Idempotency-Key's job, not a new one


async def test_a_refused_generation_fails_its_job_saying_why(served_api):
    body = {"prompt": "a cat", "size": "2048x2048"}
    response = await served_api.post("/v1/images/generations?async=true", json=body)
    job = await job_of(served_api, response.json()["job_id"])
    assert job["status"] == "failed"
    assert "size 2048x2048: width and height must be 128 to 512" in job["error"]


async def test_another_model_is_refused_before_any_job(served_api):
    async def jobs() -> list[dict]:
        return (await served_api.get("/v1/jobs", params={"limit": 100})).json()["items"]

    before = await jobs()
    body = {"prompt": "a cat", "model": "dall-e-2"}
    response = await served_api.post("/v1/images/generations?async=true", json=body)
    assert response.status_code == 422
    assert "model: async=true generates with" in response.json()["error"]["message"]
    assert await jobs() == before


async def test_another_tenants_image_content_is_not_found(served_api):
    from app.services.api_keys import create_api_key

    datum = (
        await served_api.post("/v1/images/generations", json={"prompt": "a dog", "steps": 1})
    ).json()["data"][0]
    other = await create_api_key(served_api.app.state.sessionmaker, "other", tenant="elsewhere")
    response = await served_api.client.get(
        f"/v1/images/{datum['id']}/content", headers={"Authorization": f"Bearer {other}"}
    )
    assert response.status_code == 404
