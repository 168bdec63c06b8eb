"""Schemathesis over the API's own OpenAPI document, served on loopback on the real in-process
workers: every operation, its examples, the coverage phase's edge values and bounded
fuzzing, with a fixed seed. No 5xx, no status code, content type or header the document does
not give, and every response in its documented schema."""

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import HMAC_SECRET, Api, free_port, make_settings, serve_api
from tests.hf_hub import FakeHub
from tests.runpod_control import ControlPlane

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
SCHEMATHESIS = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def control() -> Iterator[ControlPlane]:
    """RunPod's control plane: it refuses the tenants' RunPod keys the fuzzer makes up."""
    with ControlPlane("rp-fuzz-key") as plane:
        yield plane


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    """The Hub, knowing the model of the deployments' example (others are refused)."""
    qwen = {
        "config": {"architectures": ["Qwen2ForCausalLM"]},
        "files": {"model.safetensors": 10**9},
    }
    with FakeHub({"Qwen/Qwen2.5-0.5B-Instruct": qwen}) as server:
        yield server


@pytest.fixture(scope="module")
async def fuzzed_api(
    database_url, local_backend, control, hub, tmp_path_factory
) -> AsyncIterator[Api]:
    settings = make_settings(
        database_url,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path_factory.mktemp("objects"),
        public_url=f"http://127.0.0.1:{free_port()}",
        rate_limit_per_minute=1_000_000,  # the fuzzer reaches past the limiter (tested apart)
        # Deployments of the Hub's model accepted; without a RunPod key of the stack's (and
        # the control plane refusing the keys the fuzzer makes up) nothing is made at RunPod.
        deployment_image="tandem/llm:fuzz",
        deployment_imagegen_image="tandem/imagegen:fuzz",
        hf_endpoint=hub.url,
        max_live_deployments=1_000,
        runpod_rest_api=control.url,
    )
    async for api in serve_api(settings, local_backend):
        yield api


async def test_the_schema_holds_under_fuzzing(fuzzed_api):
    url = fuzzed_api.app.state.settings.public_url
    run = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {fuzzed_api.key}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--workers",
        "1",  # CPython 3.11 can fail compiling in two threads at once (SystemError)
        "--request-timeout",
        "60",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await run.communicate()  # the API answers in this event loop meanwhile
    report = output.decode(errors="replace")
    assert run.returncode == 0, report[-30000:]
