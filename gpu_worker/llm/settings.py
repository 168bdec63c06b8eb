"""The LLM worker's settings, read once from its environment (the names worker-vllm users know)."""

from typing import Literal

from pydantic import Field

from gpu_worker.common.settings import ModelSettings


class LlmSettings(ModelSettings):
    model_name: str = "Qwen/Qwen2.5-1.5B-Instruct"
    task: Literal["generate", "embed"] = "generate"
    max_model_len: int | None = Field(None, ge=16)
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    quantization: str | None = None
    enforce_eager: bool = False
    max_concurrency: int = Field(32, ge=1, le=1024)
    # A sane default: worker-vllm's users trip over vLLM's default of 16 tokens.
    default_max_tokens: int = Field(512, ge=1)
    max_embed_batch: int = Field(256, ge=1)
