"""A deployment's model checks: on the Hub (a local fake of its API, tests/hf_hub.py) and in a
directory; the smallest allowed GPU that holds the model; and the refusals, each saying why."""

import time

import pytest

from app.services.model_check import (
    ARCHITECTURES,
    PIPELINES,
    RECENT_S,
    HubUnreachable,
    ModelFacts,
    ModelRefused,
    NoCapacity,
    _recent_hub_facts,
    check_architecture,
    choose_gpu,
    model_facts,
)
from gpu_worker.imagegen.pipeline import FAMILIES
from gpu_worker.imagegen.tiny import build_tiny_sd
from gpu_worker.llm.tiny import build_tiny_llama
from runpod_api import catalog
from tests.hf_hub import FakeHub, diffusers_repo
from tests.net import free_port

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
MODELS = {
    "acme/small-chat": {
        "config": LLAMA,
        "files": {"config.json": 700, "model.safetensors": 2_000_000_000, "README.md": 5000},
    },
    "acme/huge-chat": {
        "config": LLAMA,
        "files": {f"model-0000{n}-of-00002.safetensors": 40_000_000_000 for n in (1, 2)},
    },
    "acme/gated-chat": {
        "config": LLAMA,
        "files": {"model.safetensors": 1_000_000_000},
        "gated": "manual",
    },
    "acme/vision": {"config": {"architectures": ["CLIPModel"]}, "files": {"model.bin": 600}},
    "acme/in-an-outage": {"unavailable": True},
}
GB = 1_000_000_000


# Laid out as the Hub's FLUX.1-schnell and sdxl-turbo repositories are (sizes rounded): each
# component in its folder, single-file checkpoints at the root, sdxl-turbo's half-precision
# copies beside its full ones.
MODELS |= {
    "acme/flux-schnell": diffusers_repo(
        "FluxPipeline",
        {
            "flux1-schnell.safetensors": 23.8,
            "ae.safetensors": 0.34,
            "transformer/diffusion_pytorch_model-00001-of-00003.safetensors": 9.98,
            "transformer/diffusion_pytorch_model-00002-of-00003.safetensors": 9.95,
            "transformer/diffusion_pytorch_model-00003-of-00003.safetensors": 3.87,
            "text_encoder/model.safetensors": 0.25,
            "text_encoder_2/model-00001-of-00002.safetensors": 4.99,
            "text_encoder_2/model-00002-of-00002.safetensors": 4.53,
            "vae/diffusion_pytorch_model.safetensors": 0.17,
        },
    ),
    "acme/sdxl-turbo": diffusers_repo(
        "StableDiffusionXLPipeline",
        {
            "sd_xl_turbo_1.0.safetensors": 13.9,
            "sd_xl_turbo_1.0_fp16.safetensors": 6.94,
            "unet/diffusion_pytorch_model.safetensors": 10.3,
            "unet/diffusion_pytorch_model.fp16.safetensors": 5.14,
            "text_encoder/model.safetensors": 0.49,
            "text_encoder/model.fp16.safetensors": 0.25,
            "text_encoder_2/model.safetensors": 2.78,
            "text_encoder_2/model.fp16.safetensors": 1.39,
            "vae/diffusion_pytorch_model.safetensors": 0.33,
            "vae/diffusion_pytorch_model.bin": 0.33,
            "vae/diffusion_pytorch_model.fp16.safetensors": 0.17,
        },
    ),
    "acme/kandinsky": diffusers_repo("KandinskyV22Pipeline", {"unet/model.safetensors": 2.0}),
}
ALLOWED = ["NVIDIA RTX A5000", "NVIDIA GeForce RTX 4090", "NVIDIA A40", "NVIDIA A100 80GB PCIe"]


@pytest.fixture(scope="module")
def hub():
    with FakeHub(MODELS, access={"hf_granted"}) as server:
        yield server


def test_a_hub_models_architecture_and_weights(hub):
    facts = model_facts("acme/small-chat", None, hub.url)
    assert facts == ModelFacts(("LlamaForCausalLM",), 2_000_000_000)  # weights only
    assert "GET /api/models/acme/small-chat?blobs=true" in hub.requests


def test_a_model_directory_is_read_in_place(tmp_path):
    directory = build_tiny_llama(tmp_path / "tiny")
    facts = model_facts(str(directory), None, None)
    weights = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    assert facts == ModelFacts(("LlamaForCausalLM",), weights)
    with pytest.raises(ModelRefused, match=r"has no config\.json"):
        model_facts(str(tmp_path), None, None)


def test_a_directory_that_cannot_be_read_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ModelRefused, match="cannot be read: File name too long"):
        model_facts("/" + "0" * 300, None, None)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelRefused, match=r"config\.json is not JSON"):
        model_facts(str(tmp_path), None, None)
    (tmp_path / "config.json").write_text('{"architectures": 5}')
    assert model_facts(str(tmp_path), None, None) == ModelFacts((), 0)


@pytest.mark.parametrize(
    ("model", "token", "words"),
    [
        ("acme/none", None, "no model 'acme/none' on the Hugging Face Hub"),
        (
            "acme/gated-chat",
            None,
            "acme/gated-chat is gated on the Hugging Face Hub: give an hf_token",
        ),
        ("acme/gated-chat", "hf_other", "the hf_token given may not read acme/gated-chat"),
        ("acme/two..dots", None, "'acme/two..dots' is not a Hugging Face model id: Cannot have"),
    ],
)
def test_models_that_cannot_be_read_are_refused(hub, model, token, words):
    with pytest.raises(ModelRefused, match=words):
        model_facts(model, token, hub.url)


def test_a_hub_that_cannot_answer_is_worth_another_try(hub):
    with pytest.raises(HubUnreachable, match="the Hugging Face Hub answered 503"):
        model_facts("acme/in-an-outage", None, hub.url)
    with pytest.raises(HubUnreachable, match="the Hugging Face Hub cannot be reached"):
        model_facts("acme/small-chat", None, f"http://127.0.0.1:{free_port()}")


def test_a_gated_model_with_a_token_that_may_read_it(hub):
    assert model_facts("acme/gated-chat", "hf_granted", hub.url).weight_bytes == 1_000_000_000


def test_the_request_path_takes_the_hubs_recent_answer_never_a_refusal():
    """With `recent` (the API's request path), the Hub's answer to the same model and token
    in the last RECENT_S seconds is taken without a request; a refusal is not kept, another
    token asks again, and without `recent` (the runner) the Hub is always asked."""
    with FakeHub({}, access={"hf_granted"}) as hub:

        def asked() -> int:
            return sum(r.startswith("GET /api/models/acme/new-chat?") for r in hub.requests)

        with pytest.raises(ModelRefused, match="no model 'acme/new-chat'"):
            model_facts("acme/new-chat", None, hub.url, recent=True)
        hub.models["acme/new-chat"] = MODELS["acme/small-chat"]  # uploaded since
        facts = model_facts("acme/new-chat", None, hub.url, recent=True)
        assert facts.weight_bytes == 2_000_000_000 and asked() == 2
        assert model_facts("acme/new-chat", None, hub.url, recent=True) == facts
        assert asked() == 2
        model_facts("acme/new-chat", "hf_granted", hub.url, recent=True)
        assert asked() == 3

        del hub.models["acme/new-chat"]  # removed from the Hub
        assert model_facts("acme/new-chat", None, hub.url, recent=True) == facts
        with pytest.raises(ModelRefused, match="no model"):
            model_facts("acme/new-chat", None, hub.url)  # the runner's check
        _recent_hub_facts.cache.expire(time.monotonic() + RECENT_S)  # RECENT_S later
        with pytest.raises(ModelRefused, match="no model"):
            model_facts("acme/new-chat", None, hub.url, recent=True)
        assert asked() == 5


def test_the_worker_must_serve_the_architecture_for_the_task(hub):
    facts = model_facts("acme/vision", None, hub.url)
    with pytest.raises(ModelRefused, match="has architecture CLIPModel; the worker serves"):
        check_architecture(facts, "generate", "acme/vision")
    chat = model_facts("acme/small-chat", None, hub.url)
    check_architecture(chat, "generate", "acme/small-chat")
    with pytest.raises(ModelRefused, match="serves embed with BertModel"):
        check_architecture(chat, "embed", "acme/small-chat")


def test_the_served_architectures_are_vllms():
    from vllm import ModelRegistry

    supported = set(ModelRegistry.get_supported_archs())
    assert set().union(*ARCHITECTURES.values()) <= supported


GPUS = catalog.snapshot()["gpus"]


@pytest.mark.parametrize(
    ("weights", "asked", "chosen"),
    [
        (2e9, None, "AMPERE_24"),  # fits the smallest: the first of the 24 GB ones
        (2e9, "NVIDIA GeForce RTX 4090", "ADA_24"),
        (2e9, "48gb", "AMPERE_48"),
        (30e9, None, "AMPERE_48"),  # 38 GB with room for the cache
        (60e9, None, "AMPERE_80"),
    ],
)
def test_the_smallest_allowed_pool_that_holds_the_model(weights, asked, chosen):
    facts = ModelFacts(("LlamaForCausalLM",), int(weights))
    assert choose_gpu(facts, GPUS, ALLOWED, asked) == chosen


def test_available_pools_come_first_and_none_free_says_so():
    facts = ModelFacts(("LlamaForCausalLM",), int(2e9))
    short = [
        gpu | {"availability": "NONE" if gpu["pool"] == "AMPERE_24" else "LOW"} for gpu in GPUS
    ]
    assert choose_gpu(facts, short, ALLOWED, None) == "ADA_24"  # in stock, though second
    none = [gpu | {"availability": "NONE"} for gpu in GPUS]
    with pytest.raises(NoCapacity, match=r"no GPU free in the pools that hold the model \(AMPER"):
        choose_gpu(facts, none, ALLOWED, None)


def test_a_model_no_allowed_gpu_holds_is_refused():
    facts = ModelFacts(("LlamaForCausalLM",), 80_000_000_000)
    with pytest.raises(ModelRefused, match=r"needs about 98 GB .* no allowed GPU has it"):
        choose_gpu(facts, GPUS, ALLOWED, None)
    smallest = r"24gb is too small; the smallest allowed GPU pool that holds it is AMPERE_48 \(48"
    with pytest.raises(ModelRefused, match=smallest):
        choose_gpu(ModelFacts((), 30_000_000_000), GPUS, ALLOWED, "24gb")


def test_a_diffusers_repository_is_sized_by_the_weights_it_loads_in_half_precision(hub):
    flux = model_facts("acme/flux-schnell", None, hub.url)
    assert (flux.pipeline, flux.task, flux.architectures) == ("FluxPipeline", "image", ())
    components = (9.98, 9.95, 3.87, 0.25, 4.99, 4.53, 0.17)  # not the root's single files
    assert flux.weight_bytes == sum(int(size * GB) for size in components)
    assert "GET /acme/flux-schnell/resolve/main/model_index.json" in hub.requests
    turbo = model_facts("acme/sdxl-turbo", None, hub.url)
    assert turbo.weight_bytes == sum(int(size * GB) for size in (5.14, 0.25, 1.39, 0.17))  # fp16
    assert choose_gpu(turbo, GPUS, ALLOWED, None) == "AMPERE_24"
    assert choose_gpu(flux, GPUS, ALLOWED, None) == "AMPERE_48"  # 34 GB of bf16 weights
    with pytest.raises(ModelRefused, match=r"24gb is too small; .* is AMPERE_48 .*gpu_tier 48gb"):
        choose_gpu(flux, GPUS, ALLOWED, "24gb")


def test_a_diffusers_directory_is_read_in_place(tmp_path):
    directory = build_tiny_sd(tmp_path / "tiny-sd")
    facts = model_facts(str(directory), None, None)
    assert (facts.pipeline, facts.task) == ("StableDiffusionPipeline", "image")
    loaded = sum(p.stat().st_size for p in directory.rglob("*.safetensors"))
    assert facts.weight_bytes == loaded


@pytest.mark.parametrize(
    ("model", "task", "refusal"),
    [
        ("acme/flux-schnell", "generate", "is a diffusers FluxPipeline: deploy it with task image"),
        ("acme/small-chat", "image", "is not a diffusers repository (it has no model_index.json)"),
        ("acme/kandinsky", "image", "is a diffusers KandinskyV22Pipeline; the imagegen worker"),
        ("acme/kandinsky", None, "is a diffusers KandinskyV22Pipeline; the imagegen worker"),
    ],
)
def test_a_model_the_task_cannot_serve_is_refused(hub, model, task, refusal):
    facts = model_facts(model, None, hub.url)
    with pytest.raises(ModelRefused, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        check_architecture(facts, task or facts.task, model)


def test_the_pipelines_are_the_imagegen_workers_families():
    assert set(FAMILIES) == PIPELINES
