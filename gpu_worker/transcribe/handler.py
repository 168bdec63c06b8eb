"""The transcription worker's handler: speech to text, HMAC-checked.

Input: one of `audio_url` (an http(s) URL, fetched under the SSRF rules) or `audio_base64`,
plus `language` (ISO 639-1; unset: detected), `task` (transcribe | translate: into English),
`word_timestamps`, `vad_filter` (skip silence with Silero VAD), `initial_prompt`,
`temperature` (0: Whisper's fallback ladder 0.0-1.0; otherwise that temperature), `request_id`
and, when the worker has SIGNING_KEY, `auth: {ts, sig}` over the whole input.

Output: `text`, `language`, `language_probability`, `duration` (s), `segments` (id, seek,
start, end, text, tokens, temperature, avg_logprob, compression_ratio, no_speech_prob, and
`words` when asked), `model`, `usage: {seconds}`, `timings`. Long audio is transcribed a window
at a time (gpu_worker.transcribe.audio), so memory stays flat. An input the client must fix is a
refusal (gpu_worker.common.refusal); a model that fails (CUDA out of memory) fails the job and
asks RunPod for a fresh worker.
"""

import asyncio
import base64
import binascii
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpu_worker.common.fetch import AUDIO_TYPES, on_fetch_threads
from gpu_worker.common.refusal import Refused, TooLarge, describe, input_object, request_id_of
from gpu_worker.common.signing import Unauthenticated, check_signature
from gpu_worker.transcribe.audio import windows
from gpu_worker.transcribe.settings import TranscribeSettings

# Whisper's temperature fallback: each next one when a window's decoding fails its checks.
FALLBACK_TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


class TranscribeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audio_url: str | None = Field(None, pattern=r"^https?://")
    audio_base64: str | None = Field(None, min_length=1)
    language: str | None = Field(None, min_length=2, max_length=3)
    task: Literal["transcribe", "translate"] = "transcribe"
    word_timestamps: bool = False
    vad_filter: bool = False
    initial_prompt: str | None = None
    temperature: float = Field(0.0, ge=0, le=1)
    request_id: str | None = None
    auth: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_audio(self) -> "TranscribeInput":
        if (self.audio_url is None) == (self.audio_base64 is None):
            raise ValueError("give exactly one of audio_url, audio_base64")
        return self


class TranscribeWorker:
    """One Whisper model answering transcription jobs, `max_concurrency` at once."""

    def __init__(self, settings: TranscribeSettings) -> None:
        self.settings = settings
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The model, loaded on first use (the worker's __main__ loads it at start-up)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        import ctranslate2
        from faster_whisper import WhisperModel

        settings = self.settings
        device = settings.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        supported = ctranslate2.get_supported_compute_types(device)
        if settings.compute_type not in ("default", "auto", *supported):
            raise ValueError(
                f"COMPUTE_TYPE={settings.compute_type} is not supported on {device}: use one "
                f"of {', '.join(sorted(supported))}"
            )
        return WhisperModel(
            settings.model_name,
            device=device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.max_concurrency,
        )

    def load(self) -> None:
        """Load the model now rather than on the first job."""
        self.model  # noqa: B018

    def shutdown(self) -> None:
        with self._lock:
            self._model = None

    def _audio_bytes(self, request: TranscribeInput) -> bytes:
        limit = self.settings.max_audio_bytes
        if request.audio_url is not None:
            return self.settings.fetch(request.audio_url, "audio file", AUDIO_TYPES, limit)
        assert request.audio_base64 is not None
        if len(request.audio_base64) > limit * 4 // 3 + 4:
            raise TooLarge(f"audio is larger than {limit} bytes")
        try:
            return base64.b64decode(request.audio_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refused("audio_base64 is not valid base64") from exc

    def _check(self, request: TranscribeInput) -> None:
        """Refuse what this model cannot do."""
        languages = self.model.supported_languages
        if request.language is not None and request.language not in languages:
            if len(languages) == 1:
                raise Refused(f"language: this model knows only {languages[0]!r}")
            raise Refused(f"language: {request.language!r} is not an ISO 639-1 code Whisper knows")
        if request.task == "translate" and len(languages) == 1:
            raise Refused("task: this model is English-only; it cannot translate")
        prompt = request.initial_prompt
        if prompt is not None and len(prompt) > self.settings.max_prompt_chars:
            raise TooLarge(f"initial_prompt is longer than {self.settings.max_prompt_chars} chars")

    def _transcribe(self, request: TranscribeInput, data: bytes) -> dict[str, Any]:
        """The transcript of `data`, a window at a time; the language detected in the first
        window holds for the rest."""
        model, settings = self.model, self.settings
        language, probability = request.language, 1.0
        segments: list[dict[str, Any]] = []
        duration = 0.0
        temperature = FALLBACK_TEMPERATURES if request.temperature == 0 else request.temperature
        for offset, audio in windows(data, settings.window_seconds, settings.max_audio_seconds):
            pieces, info = model.transcribe(
                audio,
                language=language,
                task=request.task,
                word_timestamps=request.word_timestamps,
                vad_filter=request.vad_filter,
                initial_prompt=request.initial_prompt if offset == 0 else None,
                temperature=temperature,
            )
            for piece in pieces:  # a generator: the window is decoded as it is read
                segments.append(_segment(len(segments), piece, offset))
            if language is None:
                language, probability = info.language, info.language_probability
            duration = offset + info.duration
        return {
            "text": "".join(segment["text"] for segment in segments).strip(),
            "language": language,
            "language_probability": round(float(probability), 4),
            "duration": _seconds(duration),
            "segments": segments,
            "model": settings.model_id,
            "usage": {"seconds": _seconds(duration)},
        }

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """Answer one RunPod job (see the module docstring)."""
        started = time.perf_counter()
        request_id = request_id_of(job)
        try:
            job_input = input_object(job)
            request = TranscribeInput.model_validate(job_input)
            check_signature(self.settings.signing_key, job_input)
            self._check(request)
            data = await on_fetch_threads(self._audio_bytes, request)
            fetched = time.perf_counter()
            result = await asyncio.to_thread(self._transcribe, request, data)
        except ValidationError as exc:
            return Refused(describe(exc)).report(request_id)
        except Refused as exc:  # fetch and decoding errors included
            return exc.report(request_id)
        except Unauthenticated as exc:
            return {"error": str(exc), "request_id": request_id}
        except RuntimeError as exc:  # CTranslate2's: out of memory, a CUDA failure
            return {
                "error": f"the speech model failed: {exc}",
                "request_id": request_id,
                "refresh_worker": True,
            }
        done = time.perf_counter()
        result["request_id"] = request_id
        result["timings"] = {
            "download_ms": round((fetched - started) * 1000, 3),
            "inference_ms": round((done - fetched) * 1000, 3),
            "total_ms": round((done - started) * 1000, 3),
        }
        return result


def _seconds(value: float) -> float:
    """A time as JSON takes it (faster-whisper's are numpy floats), to the millisecond."""
    return round(float(value), 3)


def _segment(index: int, piece: Any, offset: float) -> dict[str, Any]:
    """faster-whisper's Segment as a JSON object, its times moved by the window's `offset`."""
    segment: dict[str, Any] = {
        "id": index,
        "seek": piece.seek,
        "start": _seconds(piece.start + offset),
        "end": _seconds(piece.end + offset),
        "text": piece.text,
        "tokens": piece.tokens,
        "temperature": piece.temperature,
        "avg_logprob": float(piece.avg_logprob),
        "compression_ratio": float(piece.compression_ratio),
        "no_speech_prob": float(piece.no_speech_prob),
    }
    if piece.words is not None:
        segment["words"] = [
            {
                "word": word.word,
                "start": _seconds(word.start + offset),
                "end": _seconds(word.end + offset),
                "probability": round(float(word.probability), 4),
            }
            for word in piece.words
        ]
    return segment


worker = TranscribeWorker(TranscribeSettings())
handle = worker.handle
