"""OpenAI's audio API: `POST /v1/audio/transcriptions` and `POST /v1/audio/translations` (into
English), answered by the transcribe worker, behind the API key and the rate limit. The audio
goes to the worker inline, or, past TRANSCRIBE_INLINE_BYTES, as a signed URL of a copy stored
while it runs; with `async=true` it is transcribed in a job (202; `GET /v1/jobs/{job_id}` has
the transcript as verbose_json)."""

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from app.api.deps import (
    BackendDep,
    CallerDep,
    IdempotencyKey,
    JobsDep,
    RequestIdDep,
    SettingsDep,
    StorageDep,
    keyed_router,
)
from app.api.upload_body import UPLOAD_MARK
from app.schemas import JobOut, error_responses
from app.services.jobs import transcribe_later
from app.services.transcription import (
    Task,
    TranscriptionForm,
    answer,
    audio_type,
    inline_audio,
    read_form,
    transcription_job,
)
from app.services.uploads import SIGNED_URL_TTL_S

router = keyed_router(tags=["audio"])

_FORM = TranscriptionForm.model_json_schema(by_alias=True)
_FORM["properties"] = {
    "file": {
        "type": "string",
        "format": "binary",
        "description": "wav, mp3, m4a, flac, ogg or webm",
    },
    **_FORM["properties"],
}
_FORM["required"] = ["file", *_FORM.get("required", [])]
_FORM["examples"] = [{"model": "whisper-1", "response_format": "verbose_json", "language": "en"}]
_OPENAPI = {
    UPLOAD_MARK: True,  # the upload size limit, not the JSON body's
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": _FORM}},
    },
}
_TEXT = {"schema": {"type": "string"}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the transcript in `response_format`: json {text, usage}, verbose_json "
        "{task, language, duration, text, segments, words, usage}, or text, srt, vtt",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/plain": _TEXT,
            "text/vtt": _TEXT,
        },
    },
    202: {"model": JobOut, "description": "with async=true: the job that transcribes it"},
    **error_responses(413, 415, 502, 503, 504),
}
RunAsync = Annotated[bool, Query(alias="async", description="transcribe in a job (202)")]


class Transcriber:
    """A transcription request and what answers it."""

    def __init__(
        self,
        request: Request,
        settings: SettingsDep,
        backend: BackendDep,
        storage: StorageDep,
        jobs: JobsDep,
        caller: CallerDep,
        request_id: RequestIdDep,
        idempotency_key: IdempotencyKey = None,
        run_async: RunAsync = False,
    ) -> None:
        self.request, self.settings, self.backend, self.storage = (
            request,
            settings,
            backend,
            storage,
        )
        self.jobs, self.caller, self.request_id = jobs, caller, request_id
        self.idempotency_key, self.run_async = idempotency_key, run_async

    async def answer(self, task: Task) -> Response:
        settings, storage = self.settings, self.storage
        form, data = await read_form(self.request, settings.max_upload_bytes)
        if self.run_async:
            job = await transcribe_later(
                self.jobs, self.caller, form, task, data, self.idempotency_key
            )
            return JSONResponse(job.model_dump(mode="json"), status_code=202)
        if len(data) <= settings.transcribe_inline_bytes:
            return await self._run(form, task, inline_audio(data))
        key = f"audio/{uuid.uuid4()}"  # kept while the worker reads it
        await asyncio.to_thread(storage.put, key, data, audio_type(data))
        try:
            url = await asyncio.to_thread(storage.signed_url, key, SIGNED_URL_TTL_S)
            return await self._run(form, task, {"audio_url": url})
        finally:
            await asyncio.to_thread(storage.delete, key)

    async def _run(self, form: TranscriptionForm, task: Task, audio: dict[str, str]) -> Response:
        job_input = transcription_job(form, task, audio, self.request_id)
        result = await self.backend.run("transcribe", job_input, self.request_id)
        return answer(result, form, task)


TranscriberDep = Annotated[Transcriber, Depends()]


@router.post(
    "/audio/transcriptions",
    summary="Transcribe audio",
    openapi_extra=_OPENAPI,
    response_class=Response,
    responses=_RESPONSES,
)
async def create_transcription(transcriber: TranscriberDep) -> Response:
    """The speech in `file` as text, in its language (given, or detected)."""
    return await transcriber.answer("transcribe")


@router.post(
    "/audio/translations",
    summary="Translate audio into English",
    openapi_extra=_OPENAPI,
    response_class=Response,
    responses=_RESPONSES,
)
async def create_translation(transcriber: TranscriberDep) -> Response:
    """The speech in `file` as English text."""
    return await transcriber.answer("translate")
