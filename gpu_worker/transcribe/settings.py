"""The transcription worker's settings, read once from its environment."""

from typing import Literal

from pydantic import Field

from gpu_worker.common.settings import FetchingModelSettings


class TranscribeSettings(FetchingModelSettings):
    # A CTranslate2 Whisper: a faster-whisper size name (large-v3-turbo, small, tiny.en...), a
    # hub id (Systran/faster-whisper-small) or a model directory.
    model_name: str = "large-v3-turbo"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CTranslate2's compute type (float16, int8_float16, int8, float32...; "default": the
    # model's own, converted to what the device supports); checked against the device at start.
    compute_type: str = "default"
    cpu_threads: int = Field(0, ge=0, le=256)  # 0: CTranslate2's default
    max_concurrency: int = Field(2, ge=1, le=64)  # jobs at once, each on a model replica
    max_audio_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    max_audio_seconds: float = Field(4 * 3600, gt=0)
    # Audio is decoded and transcribed this many seconds at a time (memory stays flat however
    # long the file), each window cut at its quietest moment near the end so no word is split.
    window_seconds: float = Field(300, ge=30, le=3600)
    max_prompt_chars: int = Field(1_000, ge=1)
