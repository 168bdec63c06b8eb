"""The image-generation worker's handler on tiny random FLUX and Stable Diffusion pipelines built
in code: sizes per family, seeds, formats, quality, uploads to signed URLs (under the SSRF
rules), HMAC, every refusal, and a failing pipeline asking for a fresh worker."""

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from PIL import Image

from gpu_worker.common.signing import signed
from gpu_worker.imagegen.handler import ImagegenWorker
from gpu_worker.imagegen.pipeline import family_of
from gpu_worker.imagegen.settings import ImagegenSettings
from gpu_worker.imagegen.tiny import build_tiny_flux, build_tiny_sd

SECRET = "imagegen-secret"


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> ImagegenWorker:
    settings = ImagegenSettings(
        model_name=str(build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))),
        served_model_name="tiny-sd",
        fetch_allowed_networks=["127.0.0.0/8"],
    )
    worker = ImagegenWorker(settings)
    worker.load()
    return worker


@pytest.fixture(scope="module")
def flux(tmp_path_factory) -> ImagegenWorker:
    directory = build_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))
    worker = ImagegenWorker(ImagegenSettings(model_name=str(directory)))
    worker.load()
    return worker


async def run(worker: ImagegenWorker, job_input: dict) -> dict:
    return await worker.handle({"id": "job-1", "input": job_input})


def decoded(image: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(image["b64_json"])))


async def test_stable_diffusion_makes_n_images_at_its_native_size(sd):
    result = await run(sd, {"prompt": "a red cat", "n": 2, "seed": 7, "request_id": "r-1"})
    assert (result["family"], result["model"], result["request_id"]) == ("sd", "tiny-sd", "r-1")
    assert (result["width"], result["height"]) == (256, 256)
    assert (result["steps"], result["guidance"]) == (30, 7.5)  # Stable Diffusion's defaults
    assert [image["seed"] for image in result["images"]] == [7, 8]
    for image in result["images"]:
        picture = decoded(image)
        assert (picture.format, picture.size) == ("PNG", (256, 256))
        assert image["bytes"] == len(base64.b64decode(image["b64_json"]))
    assert set(result["timings"]) == {"inference_ms", "delivery_ms", "total_ms"}


async def test_a_seed_gives_the_same_image_and_another_seed_another(sd):
    def pixels(result: dict) -> bytes:
        return decoded(result["images"][0]).tobytes()

    job = {"prompt": "a blue car", "steps": 2}
    first, again = await run(sd, job | {"seed": 3}), await run(sd, job | {"seed": 3})
    other = await run(sd, job | {"seed": 4})
    assert pixels(first) == pixels(again) != pixels(other)
    unseeded = await run(sd, job)
    assert 0 <= unseeded["images"][0]["seed"] < 2**32


async def test_flux_makes_its_sizes_with_its_own_defaults_and_no_negative_prompt(flux):
    result = await run(flux, {"prompt": "a cat", "width": 768, "height": 512, "seed": 1})
    assert (result["family"], result["steps"], result["guidance"]) == ("flux", 4, 0.0)
    assert decoded(result["images"][0]).size == (768, 512)
    refused = await run(flux, {"prompt": "a cat", "negative_prompt": "a dog"})
    assert refused["error"] == "[invalid_input] negative_prompt: flux models take none"
    odd = await run(flux, {"prompt": "a cat", "width": 520, "height": 512})
    assert "width and height must be multiples of 16" in odd["error"]
    assert "1024x1024 native" in odd["error"]


@pytest.mark.parametrize(
    ("output_format", "pil_format"), [("png", "PNG"), ("webp", "WEBP"), ("jpeg", "JPEG")]
)
async def test_each_output_format(sd, output_format, pil_format):
    result = await run(sd, {"prompt": "a tree", "steps": 1, "output_format": output_format})
    [image] = result["images"]
    assert image["content_type"] == f"image/{output_format}"
    assert decoded(image).format == pil_format


async def test_quality_scales_the_default_steps_and_negative_prompt_is_taken(sd):
    low = await run(sd, {"prompt": "a dog", "quality": "low", "negative_prompt": "a cat"})
    assert low["steps"] == 15
    high = await run(sd, {"prompt": "a dog", "quality": "high", "width": 128, "height": 128})
    assert (high["steps"], high["width"]) == (60, 128)


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ({"prompt": ""}, "[invalid_input] prompt: String should have at least 1 character"),
        ({"prompt": "   "}, "[invalid_input] prompt: is blank"),
        ({"prompt": "a\x00cat"}, "[invalid_input] prompt: holds a NUL character"),
        (
            {"prompt": "a", "negative_prompt": "\x00"},
            "[invalid_input] negative_prompt: holds a NUL",
        ),
        ({"prompt": "a", "width": 256}, "give both width and height, or neither"),
        ({"prompt": "a", "steps": 2, "quality": "low"}, "give steps or quality, not both"),
        ({"prompt": "a", "quality": "ultra"}, "[invalid_input] quality: Input should be 'low'"),
        ({"prompt": "a", "n": 0}, "[invalid_input] n: Input should be greater than or equal to 1"),
        ({"prompt": "a", "n": 5}, "[input_too_large] n: at most 4 images per request"),
        ({"prompt": "a", "steps": 101}, "[input_too_large] steps: at most 100"),
        ({"prompt": "a" * 2001}, "[input_too_large] prompt is longer than 2000 characters"),
        ({"prompt": "a", "width": 64, "height": 64}, "size 64x64: width and height must be 128"),
        ({"prompt": "a", "width": 260, "height": 256}, "must be multiples of 8"),
        ({"prompt": "a", "width": 512, "height": 512}, "at most 131072 pixels"),
        ({"prompt": "a", "n": 2, "upload_urls": ["http://x"]}, "upload_urls holds 1 URLs for n=2"),
        (
            {"prompt": "a", "size": "256x256"},
            "[invalid_input] size: Extra inputs are not permitted",
        ),
        ({"prompt": "a", "seed": -1}, "[invalid_input] seed: Input should be greater than"),
    ],
)
async def test_bad_input_is_refused_naming_what_to_fix(sd, job, error):
    result = await run(sd, job)
    assert result["error"].startswith(error) or error in result["error"], result
    assert "images" not in result


async def test_a_non_object_input_is_refused(sd):
    assert (await sd.handle({"id": "j", "input": "a cat"}))["error"] == (
        "[invalid_input] input must be an object"
    )


async def test_images_over_the_inline_limit_need_upload_urls(sd, monkeypatch):
    monkeypatch.setattr(sd.settings, "max_inline_bytes", 1024)
    result = await run(sd, {"prompt": "a cat", "steps": 1})
    assert result["error"] == "[input_too_large] the images are over 1024 bytes: give upload_urls"


class UploadSite(BaseHTTPRequestHandler):
    """Takes PUTs as a signed upload URL does: 200, or 403 under /expired/."""

    received: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/expired/"):
            self.send_response(403)
        else:
            self.received[self.path] = (self.headers["Content-Type"], body)
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), UploadSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_images_are_uploaded_to_their_signed_urls(sd, site):
    urls = [f"{site}/images/a.webp?sig=1", f"{site}/images/b.webp?sig=2"]
    job = {"prompt": "a cat", "n": 2, "steps": 1, "output_format": "webp", "upload_urls": urls}
    result = await run(sd, job)
    assert [set(image) for image in result["images"]] == [
        {"index", "seed", "content_type", "bytes"}
    ] * 2
    for image, path in zip(
        result["images"], ("/images/a.webp?sig=1", "/images/b.webp?sig=2"), strict=True
    ):
        content_type, body = UploadSite.received[path]
        assert (content_type, len(body)) == ("image/webp", image["bytes"])
        assert Image.open(io.BytesIO(body)).format == "WEBP"


async def test_an_upload_that_fails_fails_the_job_as_the_workers_fault(sd, site, monkeypatch):
    result = await run(sd, {"prompt": "a", "steps": 1, "upload_urls": [f"{site}/expired/a.png"]})
    assert result["error"] == "the upload URL answered HTTP 403"  # no refusal code: a 502
    monkeypatch.setattr(sd.settings, "fetch_allowed_networks", [])
    result = await run(sd, {"prompt": "a", "steps": 1, "upload_urls": [f"{site}/images/c.png"]})
    assert "resolves to a non-public address" in result["error"]
    assert not result["error"].startswith("[")


async def test_with_a_secret_only_signed_prompts_are_drawn(sd, monkeypatch):
    monkeypatch.setattr(
        sd.settings,
        "signing_key",
        ImagegenSettings(model_name="x", signing_key=SECRET).signing_key,
    )
    job = {"prompt": "a red car", "steps": 1}
    assert (await run(sd, job))["error"] == "Authentication failed"
    other = signed(SECRET, job | {"prompt": "another prompt"})["auth"]
    assert (await run(sd, job | {"auth": other}))["error"] == "Authentication failed"
    assert "images" in await run(sd, signed(SECRET, job))


async def test_a_failing_pipeline_asks_for_a_fresh_worker(sd, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(sd, "_generate", out_of_memory)
    result = await run(sd, {"prompt": "a cat"})
    assert result == {
        "error": "the image model failed: CUDA out of memory",
        "request_id": "job-1",
        "refresh_worker": True,
    }


def test_memory_options_are_checked_when_the_pipeline_loads(tmp_path):
    for options, error in (
        ({"cpu_offload": True, "device": "cpu"}, "CPU_OFFLOAD needs a CUDA device"),
        ({"dtype": "float16", "device": "cpu"}, "DTYPE=float16 does not run on the CPU"),
        ({"device": "cuda"}, "DEVICE=cuda but no CUDA device is visible"),
    ):
        worker = ImagegenWorker(ImagegenSettings(model_name=str(tmp_path), **options))
        with pytest.raises(ValueError, match=error):
            worker.load()


def test_a_pipeline_of_another_family_is_refused():
    class KandinskyPipeline:
        pass

    with pytest.raises(ValueError, match="KandinskyPipeline is not a text-to-image family"):
        family_of(KandinskyPipeline())
