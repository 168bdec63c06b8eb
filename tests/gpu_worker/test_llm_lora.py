"""LoRA adapters on the LLM worker (vLLM's engine on the CPU, a tiny random Llama): enabled and
named by the environment (ENABLE_LORA, LORA_MODULES, MAX_LORA_RANK), chosen per OpenAI request
by `model`, listed by /v1/models; an adapter that does not exist is a clear error and the
worker goes on serving. The adapter is built here in PEFT's format, with random weights."""

import json
from pathlib import Path

import pytest
import torch
from openai.types import Model
from openai.types.chat import ChatCompletion
from safetensors.torch import save_file

from gpu_worker.llm.tiny import build_tiny_llama
from tests.gpu_worker.test_llm_openai import openai
from tests.vllm_cpu import cpu_settings, running_llm_worker

pytestmark = pytest.mark.vllm

RANK = 8


def build_tiny_lora(directory: Path) -> Path:
    """A rank-8 adapter of the tiny Llama's attention (q and v of both layers), as PEFT saves
    one; lora_B is not zero (PEFT's initial value), so it changes the answers."""
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for layer in range(2):
        for module in ("q_proj", "v_proj"):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, 128, generator=generator)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(128, RANK, generator=generator)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, directory / "adapter_model.safetensors")
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": RANK,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "lora_dropout": 0.0,
        "bias": "none",
    }
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def lora_worker(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    model, adapter = build_tiny_llama(root / "model"), build_tiny_lora(root / "adapter")
    settings = cpu_settings(model, served_model_name="tiny", max_model_len=256)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ENABLE_LORA", "true")
        env.setenv("MAX_LORA_RANK", str(RANK))
        env.setenv("LORA_MODULES", f"tiny-support={adapter}")
        with running_llm_worker(settings) as worker:
            yield worker


async def answer(worker, model: str) -> str | None:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    [result] = await openai(worker, "/v1/chat/completions", body | {"max_tokens": 8, "seed": 0})
    return ChatCompletion.model_validate(result).choices[0].message.content


async def test_the_adapter_is_listed_and_chosen_by_model(lora_worker):
    [listing] = await openai(lora_worker, "/v1/models")
    cards = [Model.model_validate(card) for card in listing["data"]]
    assert [card.id for card in cards] == ["tiny", "tiny-support"]
    base, adapted = await answer(lora_worker, "tiny"), await answer(lora_worker, "tiny-support")
    assert base != adapted  # the adapter's weights took part
    assert await answer(lora_worker, "tiny-support") == adapted  # and always the same way


async def test_an_adapter_that_does_not_exist_is_a_404_and_the_worker_goes_on(lora_worker):
    body = {"model": "tiny-sales", "messages": [{"role": "user", "content": "Hello"}]}
    [refused] = await openai(lora_worker, "/v1/chat/completions", body)
    error = json.loads(refused["error"])["error"]
    assert (error["code"], error["param"]) == (404, "model")
    assert "tiny-sales" in error["message"]
    assert await answer(lora_worker, "tiny-support")
