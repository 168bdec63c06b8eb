"""OpenAI's `POST /v1/images/generations` on the real imagegen worker in-process (a tiny random
Stable Diffusion, 256x256 native) with the official `openai` client: the images uploaded to the
API's storage by signed URL, kept as the tenant's images, searchable when embedded; every
refusal before anything is kept, and a failed job leaves no file behind."""

import base64
import io

import openai
import pytest
from PIL import Image

from gpu_worker.common.worker_types import WORKER_TYPES
from tests.conftest import HMAC_SECRET, Api, free_port, runpod_settings, serve_api, usage_of


@pytest.fixture(scope="module")
def api(served_api: Api) -> Api:
    """Served over HTTP: the worker PUTs the images to the API's signed upload URLs."""
    return served_api


@pytest.fixture(scope="module")
async def runpod_api(database_url, emulator, tmp_path_factory):
    """The API on the runpod backend: the imagegen worker is a process behind the emulator."""
    settings = runpod_settings(
        database_url,
        emulator,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path_factory.mktemp("objects"),
        public_url=f"http://127.0.0.1:{free_port()}",
    )
    async for served in serve_api(settings):
        yield served


def client(api: Api) -> openai.AsyncOpenAI:
    base_url = str(api.client.base_url).rstrip("/") + "/v1"
    return openai.AsyncOpenAI(base_url=base_url, api_key=api.key, max_retries=0, timeout=60)


def stored_images(api: Api) -> set[str]:
    return {key for key, _ in api.storage.listed("images/")}


@pytest.fixture(params=["api", pytest.param("runpod_api", marks=pytest.mark.vllm)])
def either_api(request) -> Api:
    """The API on the local backend or on the runpod one."""
    return request.getfixturevalue(request.param)


async def test_images_through_the_openai_client_are_kept_as_the_tenants(either_api):
    api = either_api
    before = len(await usage_of(api))
    result = await client(api).images.generate(prompt="a red cat", n=2, size="256x256")
    assert len(result.data) == 2 and result.size == "256x256"
    assert result.model in ("tandem-tiny-random-sd", "tiny-sd")  # local, or the emulator's
    for datum in result.data:
        signed = await api.client.get(datum.url)  # no key: the URL is signed
        picture = Image.open(io.BytesIO(signed.content))
        assert (picture.format, picture.size) == ("PNG", (256, 256))
        image = (await api.get(f"/v1/images/{datum.id}")).json()
        assert image["source_id"] == f"generated/{datum.id}"
        assert (image["title"], image["content_type"]) == ("a red cat", "image/png")
        generated = image["metadata"]["generated"]
        assert generated["prompt"] == "a red cat" and generated["model"] == result.model
        assert generated["seed"] == datum.seed
    listed = {image["id"] for image in (await api.get("/v1/images")).json()["items"]}
    assert {datum.id for datum in result.data} <= listed
    [drawn] = (await usage_of(api, before + 1))[before:]  # written after the answer
    assert drawn.route == "/v1/images/generations" and drawn.items == 2
    assert drawn.pixel_steps and drawn.pixel_steps % (2 * 256 * 256) == 0  # x its steps


async def test_b64_json_in_each_output_format_with_a_seed(api):
    result = await client(api).images.generate(
        prompt="a blue car",
        response_format="b64_json",
        output_format="webp",
        extra_body={"seed": 11, "steps": 2},
    )
    [datum] = result.data
    assert Image.open(io.BytesIO(base64.b64decode(datum.b64_json))).format == "WEBP"
    assert datum.seed == 11 and result.output_format == "webp"
    again = await client(api).images.generate(
        prompt="a blue car", response_format="b64_json", output_format="webp",
        extra_body={"seed": 11, "steps": 2},
    )  # fmt: skip
    assert again.data[0].b64_json == datum.b64_json  # the same seed draws the same image


async def test_only_embedded_images_are_found_by_search(api):
    plain = await api.post("/v1/images/generations", json={"prompt": "a tree", "steps": 1})
    embedded = await api.post(
        "/v1/images/generations", json={"prompt": "a tree", "steps": 1, "embed": True}
    )
    assert plain.status_code == embedded.status_code == 200, embedded.text
    hits = (await api.get("/v1/search", params={"q": "a tree", "kind": "image", "k": 50})).json()
    found = {hit["document_id"] for hit in hits["hits"]}
    assert embedded.json()["data"][0]["id"] in found
    assert plain.json()["data"][0]["id"] not in found


async def test_a_generated_image_is_deleted_with_its_file(api):
    datum = (await api.post("/v1/images/generations", json={"prompt": "a dog"})).json()["data"][0]
    before = stored_images(api)
    assert (await api.delete(f"/v1/images/{datum['id']}")).status_code == 204
    assert len(stored_images(api)) == len(before) - 1
    assert (await api.get(f"/v1/images/{datum['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"prompt": "a cat", "size": "1024x1024"}, 422, "size 1024x1024: width and height must "
         "be 128 to 512 (sd: 256x256 native"),
        ({"prompt": "a cat", "size": "big"}, 422, "size: String should match pattern"),
        ({"prompt": "a cat", "n": 5}, 413, "n: at most 4 images per request"),
        ({"prompt": "a cat", "n": 11}, 422, "n: Input should be less than or equal to 10"),
        ({"prompt": ""}, 422, "prompt: String should have at least 1 character"),
        ({"prompt": "   "}, 422, "prompt: String should match pattern"),
        ({"prompt": "a\x00cat"}, 422, "must not contain the NUL character"),
        ({"prompt": "a cat", "model": "dall-e-3"}, 404, "model: 'dall-e-3' is neither"),
        ({"prompt": "a cat", "steps": 2, "quality": "hd"}, 422, "give steps or quality, not both"),
        ({"prompt": "a cat", "style": "vivid"}, 422, "style: Extra inputs are not permitted"),
        ({"prompt": "a cat", "steps": 501}, 422, "steps: Input should be less than or equal"),
    ],
)  # fmt: skip
async def test_bad_requests_are_refused_and_nothing_is_kept(api, body, status, message):
    before = stored_images(api), (await api.get("/v1/images", params={"limit": 100})).json()
    response = await api.post("/v1/images/generations", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    after = stored_images(api), (await api.get("/v1/images", params={"limit": 100})).json()
    assert after == before


async def test_the_openai_client_raises_a_refusal_with_its_status(api):
    with pytest.raises(openai.UnprocessableEntityError, match="sd: 256x256 native"):
        await client(api).images.generate(prompt="a cat", size="1792x1024")


async def test_a_job_failing_after_its_uploads_leaves_no_file(api, local_backend, monkeypatch):
    worker = local_backend.workers["imagegen"]
    handle = worker.handle

    async def fails_after_uploading(job):
        await handle(job)  # the images are uploaded...
        return {"error": "the image model failed: lost the device", "request_id": "x"}

    monkeypatch.setattr(worker, "handle", fails_after_uploading)
    before = stored_images(api)
    response = await api.post("/v1/images/generations", json={"prompt": "a cat", "n": 2})
    assert response.status_code == 502
    assert response.json()["error"]["message"] == (
        "worker error: the image model failed: lost the device"
    )
    assert stored_images(api) == before


def test_imagegen_is_a_worker_type():
    assert WORKER_TYPES["imagegen"].model_setting == "IMAGEGEN_MODEL"
