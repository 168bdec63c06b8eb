"""vLLM's async engine, created once per worker process from `LlmSettings`."""

from collections.abc import AsyncIterator
from typing import cast

from vllm import AsyncEngineArgs, PoolingParams, SamplingParams
from vllm.outputs import RequestOutput
from vllm.v1.engine.async_llm import AsyncLLM

from gpu_worker.llm.settings import LlmSettings


class LlmEngine:
    def __init__(self, settings: LlmSettings) -> None:
        args = AsyncEngineArgs(
            model=settings.model_name,
            served_model_name=settings.model_id,
            runner="pooling" if settings.task == "embed" else "generate",
            max_model_len=settings.max_model_len,  # type: ignore[arg-type]  # vLLM's None: the model's
            dtype=settings.dtype,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            tensor_parallel_size=settings.tensor_parallel_size,
            quantization=settings.quantization,
            enforce_eager=settings.enforce_eager,
            max_num_seqs=settings.max_concurrency,
            disable_log_stats=False,  # keeps per-request timings (queue, first token)
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.model_id = settings.model_id
        self.max_model_len = self.engine.model_config.max_model_len
        self.tokenizer = self.engine.get_tokenizer()

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of `messages` rendered with the model's chat template."""
        ids = self.tokenizer.apply_chat_template(
            messages,  # type: ignore[arg-type]  # plain role/content dicts: OpenAI's message shape
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return cast(list[int], ids)  # tokenize=True: ids, not text

    def text_prompt(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt)

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        return self.engine.generate({"prompt_token_ids": prompt_ids}, params, request_id)

    async def embed(self, text: str, normalize: bool, request_id: str) -> tuple[list[float], int]:
        """One embedding and the number of tokens it read; a text longer than the model's
        context is cut to fit it (as sentence-transformers does)."""
        params = PoolingParams(task="embed", use_activation=normalize)
        ids = self.tokenizer(text, truncation=True, max_length=self.max_model_len)["input_ids"]
        final = None
        async for output in self.engine.encode({"prompt_token_ids": ids}, params, request_id):
            final = output
        assert final is not None
        return final.outputs.data.tolist(), len(final.prompt_token_ids)

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def shutdown(self) -> None:
        self.engine.shutdown()
