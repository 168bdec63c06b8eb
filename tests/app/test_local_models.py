"""Which models the local backend serves: configured ones when they load offline, tiny random
stand-ins built once otherwise, and the packaged MiniLM for text embeddings."""

import numpy as np
import pytest

from app.core.errors import InputRefused
from app.inference.local_models import (
    TINY_CLIP,
    TINY_LLM,
    chat_worker,
    clip_worker,
    offline_path,
    served,
    text_embedding_worker,
    tiny_model,
)
from gpu_worker.clip.tiny import build_tiny_clip
from tests.conftest import make_settings

DEPLOY_A = "How do I deploy my FastAPI service to Cloud Run?"
DEPLOY_B = "Steps to ship a FastAPI app on Google Cloud Run."
UNRELATED = "My grandmother bakes apple pie every Sunday."


def test_the_start_up_banner_names_what_will_really_serve(tmp_path):
    """`make dev` says so when a configured model is not available and a stand-in serves."""
    assert served("tandem-tests/not-cached", TINY_LLM) == (
        f"{TINY_LLM} (a tiny random stand-in: tandem-tests/not-cached is not available offline)"
    )
    assert served(str(tmp_path), TINY_LLM) == str(tmp_path)  # a model directory serves itself


def test_a_directory_or_a_cached_hub_id_is_available_offline(tmp_path):
    assert offline_path(str(tmp_path)) == str(tmp_path)
    assert offline_path("tandem-tests/not-in-any-cache") is None
    assert offline_path("not a valid hub id!") is None


def test_a_missing_model_falls_back_to_a_tiny_one_built_once(tmp_path, caplog):
    settings = make_settings(None, tandem_home=tmp_path, clip_model="tandem-tests/missing")
    worker = clip_worker(settings)
    built = tmp_path / "models" / TINY_CLIP
    assert worker.settings.model_name == str(built)
    assert worker.settings.model_id == TINY_CLIP
    assert "CLIP_MODEL=tandem-tests/missing is not available offline" in caplog.text
    first_build = (built / "config.json").stat().st_mtime_ns
    clip_worker(settings)
    assert (built / "config.json").stat().st_mtime_ns == first_build  # reused, not rebuilt


def test_in_local_mode_the_clip_worker_may_fetch_exactly_the_apis_objects(tmp_path):
    settings = make_settings(
        None, tandem_home=tmp_path, storage_mode="local", public_url="http://127.0.0.1:8000"
    )
    fetch = clip_worker(settings).settings
    assert fetch.fetch_allowed_prefixes == ["http://127.0.0.1:8000/v1/objects/"]
    assert fetch.fetch_allowed_networks == []  # no host on every port


def test_a_model_directory_is_served_under_its_name(tmp_path):
    model = tiny_model(tmp_path / "my-clip", build_tiny_clip)
    worker = clip_worker(make_settings(None, tandem_home=tmp_path, clip_model=model))
    assert (worker.settings.model_name, worker.settings.model_id) == (model, "my-clip")
    chat = chat_worker(make_settings(None, tandem_home=tmp_path, llm_model=model))
    assert (chat.settings.model_id, chat.settings.task) == ("my-clip", "generate")


def test_a_text_embedding_model_that_is_not_offline_is_refused(tmp_path):
    settings = make_settings(None, text_embedding_model="tandem-tests/missing")
    with pytest.raises(ValueError, match="TEXT_EMBEDDING_MODEL=tandem-tests/missing"):
        text_embedding_worker(settings)


async def test_text_embeddings_come_from_minilm(local_backend):
    result = await local_backend.run("embed", {"input": [DEPLOY_A, DEPLOY_B, UNRELATED]}, "r-1")
    assert (result["model"], result["dim"]) == ("all-MiniLM-L6-v2", 384)
    a, b, c = (np.array(v) for v in result["embeddings"])
    assert float(a @ b) > 0.6 > 0.2 > float(a @ c)


async def test_bad_text_embedding_input_is_the_workers_clear_refusal(local_backend):
    with pytest.raises(InputRefused, match="input"):
        await local_backend.run("embed", {"input": []}, "r-2")
