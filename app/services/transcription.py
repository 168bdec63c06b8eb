"""Speech to text, as OpenAI's audio API has it: the form a transcription request sends, the
transcribe worker's job for it, and its answer in each `response_format`."""

import base64
import json
from typing import Annotated, Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import Field, StringConstraints, model_validator
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.api.upload_body import validated
from app.core.errors import InvalidInput, UnsupportedMediaType, WorkerFailed
from app.ingest.chunk import Chunk as TextChunk
from app.ingest.chunk import count_tokens
from app.schemas import Strict
from app.services.uploads import check_size

# The languages Whisper knows (ISO 639-1, and "haw", "yue"): a code outside them is refused
# before anything runs.
_LANGUAGES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha "
    "haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn "
    "mr ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te "
    "tg th tk tl tr tt uk ur uz vi yi yo yue zh"
)
WHISPER_LANGUAGES = frozenset(_LANGUAGES.split(" "))
ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Task = Literal["transcribe", "translate"]
MAX_PROMPT_CHARS = 1_000
# The containers FFmpeg reads that hold speech, by their first bytes: (magic, offset, type).
AUDIO_EXTENSIONS = {
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/webm": ".webm",
    "audio/mp4": ".m4a",
}
_MAGIC = (
    (b"WAVE", 8, "audio/wav"),  # RIFF's WAVE form (its other forms: WebP, AVI)
    (b"ID3", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
    (b"\x1aE\xdf\xa3", 0, "audio/webm"),  # Matroska / WebM
    (b"ftyp", 4, "audio/mp4"),  # m4a, mp4 (ISO media; not its image brands, below)
)
_IMAGE_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis")


class TranscriptionForm(Strict):
    """The fields of OpenAI's transcription and translation requests, besides `file`."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    language: str | None = Field(None, description="ISO 639-1; unset: detected")
    prompt: Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)] | None = None
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Literal["segment", "word"]] = Field(
        default_factory=list, alias="timestamp_granularities[]", max_length=2
    )
    temperature: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "TranscriptionForm":
        if self.language is not None and self.language not in WHISPER_LANGUAGES:
            raise ValueError(
                f"language: {self.language!r} is not a language Whisper knows; give an ISO "
                "639-1 code such as en, de or ja, or leave it out to have it detected"
            )
        if self.timestamp_granularities and self.response_format != "verbose_json":
            raise ValueError("timestamp_granularities[] needs response_format verbose_json")
        return self

    @property
    def words(self) -> bool:
        return "word" in self.timestamp_granularities


def sniffed_audio_type(data: bytes) -> str | None:
    """The media type of `data` if its first bytes are an audio container's (a key of
    AUDIO_EXTENSIONS), else None."""
    if data[4:8] == b"ftyp" and data[8:12] in _IMAGE_BRANDS:
        return None
    for magic, offset, media_type in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return media_type
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame
        return "audio/mpeg"
    return None


def audio_type(data: bytes) -> str:
    """The media type of audio `data`; 415 for anything else."""
    media_type = sniffed_audio_type(data)
    if media_type is None:
        raise UnsupportedMediaType("file: not an audio file; send wav, mp3, m4a, flac, ogg or webm")
    return media_type


async def read_form(request: Request, max_bytes: int) -> tuple[TranscriptionForm, bytes]:
    """The request's fields and audio; 413, 415 or 422 naming what is wrong."""
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (MultiPartException, HTTPException) as exc:
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        raise InvalidInput(f"malformed multipart body: {message}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput("file: send the audio in a multipart field named `file`")
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name == "file":
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{name}: only `file` may be a file")
        if name == "timestamp_granularities[]":
            fields.setdefault(name, []).append(value)
        else:
            fields[name] = value
    checked = validated(TranscriptionForm, fields)
    data = await file.read()
    if not data:
        raise InvalidInput("file: the audio file is empty")
    check_size(data, max_bytes)
    audio_type(data)
    return checked, data


def transcription_job(
    form: TranscriptionForm, task: Task, audio: dict[str, str], request_id: str
) -> dict[str, Any]:
    """The transcribe worker's input for `form`, the audio given as `audio_base64` or
    `audio_url` (the backend signs it as it sends it)."""
    job = {
        **audio,
        "task": task,
        "word_timestamps": form.words,
        "temperature": form.temperature,
        "request_id": request_id,
    }
    if form.language is not None:
        job["language"] = form.language
    if form.prompt:
        job["initial_prompt"] = form.prompt
    return job


def inline_audio(data: bytes) -> dict[str, str]:
    return {"audio_base64": base64.b64encode(data).decode()}


def checked_transcript(result: dict[str, Any]) -> dict[str, Any]:
    """The worker's result, if it holds a transcript; WorkerFailed otherwise."""
    if not (
        isinstance(result.get("text"), str)
        and isinstance(result.get("segments"), list)
        and isinstance(result.get("duration"), int | float)
    ):
        raise WorkerFailed("the transcribe worker answered without text, segments and duration")
    return result


def transcript(result: dict[str, Any], task: Task, words: bool) -> dict[str, Any]:
    """The worker's result as OpenAI's verbose_json (segments, and words when asked)."""
    checked_transcript(result)
    body: dict[str, Any] = {
        "task": task,
        "language": result["language"],
        "duration": result["duration"],
        "text": result["text"],
        "segments": [
            {key: value for key, value in segment.items() if key != "words"}
            for segment in result["segments"]
        ],
        "usage": {"type": "duration", "seconds": _seconds(result)},
    }
    if words:
        body["words"] = [
            {"word": word["word"].strip(), "start": word["start"], "end": word["end"]}
            for segment in result["segments"]
            for word in segment.get("words", [])
        ]
    return body


def _seconds(result: dict[str, Any]) -> int:
    """Billed seconds, as OpenAI counts them: whole, rounded up."""
    return int(-(-float(result["duration"]) // 1))


def answer(result: dict[str, Any], form: TranscriptionForm, task: Task) -> Response:
    """The worker's result in the form's `response_format`."""
    checked_transcript(result)
    match form.response_format:
        case "verbose_json":
            return JSONResponse(transcript(result, task, form.words))
        case "json":
            usage = {"type": "duration", "seconds": _seconds(result)}
            return JSONResponse({"text": result["text"], "usage": usage})
        case "text":
            return PlainTextResponse(result["text"])
        case "srt":
            return PlainTextResponse(subtitles(result["segments"], "srt"))
        case "vtt":
            return PlainTextResponse(subtitles(result["segments"], "vtt"), media_type="text/vtt")
    raise AssertionError(form.response_format)


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{separator}{millis % 1000:03d}"


def subtitles(segments: list[dict[str, Any]], kind: Literal["srt", "vtt"]) -> str:
    """The segments as SubRip or WebVTT cues."""
    separator = "," if kind == "srt" else "."
    cues = []
    for number, segment in enumerate(segments, 1):
        times = f"{_timestamp(segment['start'], separator)} --> "
        times += _timestamp(segment["end"], separator)
        text = segment["text"].strip()
        cues.append(f"{number}\n{times}\n{text}\n" if kind == "srt" else f"{times}\n{text}\n")
    body = "\n".join(cues)
    return body if kind == "srt" else f"WEBVTT\n\n{body}"


def transcript_chunks(segments: list[dict[str, Any]], max_tokens: int) -> list[TextChunk]:
    """A transcript's segments as chunks of whole segments, about `max_tokens` tokens each (a
    longer segment alone), each saying where it is in the audio."""
    chunks: list[TextChunk] = []
    texts: list[str] = []
    start = end = 0.0
    count = 0
    for segment in segments:
        text = str(segment.get("text", "")).strip()
        if not text:
            continue
        tokens = count_tokens(text)
        if texts and count + tokens > max_tokens:
            chunks.append(TextChunk("", " ".join(texts), {"start": start, "end": end}))
            texts, count = [], 0
        if not texts:
            start = segment["start"]
        texts.append(text)
        count += tokens
        end = segment["end"]
    if texts:
        chunks.append(TextChunk("", " ".join(texts), {"start": start, "end": end}))
    return chunks


def form_summary(form: TranscriptionForm) -> str:
    """The form as canonical JSON (what an Idempotency-Key is bound to, with the audio)."""
    return json.dumps(form.model_dump(by_alias=True), sort_keys=True)
