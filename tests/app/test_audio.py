"""OpenAI's audio routes on the real transcribe worker in-process (the packaged Whisper tiny.en)
with the official `openai` client: every response format, words, the audio inline or by a
stored copy's URL, async jobs, and every refusal before anything is stored or run."""

import asyncio

import httpx
import openai
import pytest

from app.services.transcription import WHISPER_LANGUAGES, subtitles
from tests.conftest import Api
from tests.speech import encoded, silence_wav, spoken, words


def client(api: Api) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=api.client._transport, timeout=60)
    base_url = str(api.client.base_url).rstrip("/") + "/v1"  # in-process, or served
    return openai.AsyncOpenAI(base_url=base_url, api_key=api.key, http_client=http, max_retries=0)


async def test_a_transcription_through_the_openai_client(api):
    result = await client(api).audio.transcriptions.create(
        model="whisper-1", file=("fox.wav", spoken())
    )
    assert {"quick", "brown", "fox"} <= words(result.text)


async def test_verbose_json_with_words(api):
    mp3 = encoded(spoken(), "mp3")
    result = await client(api).audio.transcriptions.create(
        model="whisper-1",
        file=("fox.mp3", mp3),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert result.language == "en" and 2 < result.duration < 4
    assert result.segments and result.segments[0].start == 0
    assert "fox" in [word.word.lower().strip(".") for word in result.words or []]
    assert result.usage is not None and result.usage.seconds == 3  # whole seconds, rounded up


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
async def test_text_and_subtitles(api, response_format):
    text = await client(api).audio.transcriptions.create(
        model="whisper-1", file=("fox.flac", encoded(spoken(), "flac")),
        response_format=response_format,
    )  # fmt: skip
    assert "fox" in text.lower()
    if response_format == "srt":
        assert text.startswith("1\n00:00:00,000 --> 00:00:0")
    if response_format == "vtt":
        assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:0")


def test_subtitle_times_carry_hours_and_milliseconds():
    segments = [{"start": 3661.5, "end": 3662.25, "text": " Hi."}]
    assert subtitles(segments, "srt") == "1\n01:01:01,500 --> 01:01:02,250\nHi.\n"
    assert subtitles(segments, "vtt") == "WEBVTT\n\n01:01:01.500 --> 01:01:02.250\nHi.\n"


async def test_a_file_past_the_inline_size_goes_by_signed_url(served_api, monkeypatch):
    """Above TRANSCRIBE_INLINE_BYTES the worker downloads a stored copy through the API's own
    signed URL; the copy is gone afterwards."""
    settings = served_api.app.state.settings
    monkeypatch.setattr(settings, "transcribe_inline_bytes", 0)
    result = await client(served_api).audio.transcriptions.create(
        model="whisper-1", file=("fox.m4a", encoded(spoken(), "ipod"))
    )
    assert "fox" in words(result.text)
    assert list(served_api.storage.listed("audio/")) == []


async def test_an_async_transcription_is_a_job(served_api):
    """The audio is stored and the worker reads it by its signed URL, in a job."""
    ogg = encoded(spoken(), "ogg")
    response = await served_api.post(
        "/v1/audio/transcriptions?async=true",
        files={"file": ("fox.ogg", ogg)},
        data={"model": "whisper-1", "timestamp_granularities[]": "word"},
        headers={"Idempotency-Key": "fox-1"},
    )
    assert response.status_code == 422  # words need verbose_json, as OpenAI's API has it
    response = await served_api.post(
        "/v1/audio/transcriptions?async=true",
        files={"file": ("fox.ogg", ogg)},
        data={"model": "whisper-1"},
        headers={"Idempotency-Key": "fox-1"},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "transcribe"
    for _ in range(60):  # a poll a second: under the rate limit
        job = (await served_api.get(f"/v1/jobs/{job['job_id']}")).json()
        if job["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(1)
    assert job["status"] == "succeeded", job
    assert "fox" in words(job["result"]["text"]) and job["result"]["segments"]
    for _ in range(50):  # the audio goes with the job, just after it commits
        if not list(served_api.storage.listed("audio/")):
            break
        await asyncio.sleep(0.1)
    assert list(served_api.storage.listed("audio/")) == []
    again = await served_api.post(
        "/v1/audio/transcriptions?async=true",
        files={"file": ("fox.ogg", ogg)},
        data={"model": "whisper-1"},
        headers={"Idempotency-Key": "fox-1"},
    )
    assert again.json()["job_id"] == job["job_id"]


@pytest.mark.parametrize(
    ("files", "data", "status", "words_"),
    [
        ({"file": ("a.txt", b"hello, not audio")}, {"model": "w"}, 415, "file: not an audio"),
        ({"file": ("a.webp", b"RIFF\0\0\0\0WEBPVP8 ")}, {"model": "w"}, 415, "not an audio"),
        ({"file": ("a.heic", b"\0\0\0\x18ftypheic")}, {"model": "w"}, 415, "not an audio"),
        ({"file": ("a.wav", b"")}, {"model": "w"}, 422, "file: the audio file is empty"),
        ({"file": ("a.wav", b"RIFF\0\0\0\0WAVEjunk")}, {"model": "w"}, 422, "decode"),
        (
            {"file": ("a.wav", "SPOKEN")},
            {"model": "w", "response_format": "docx"},
            422,
            "response_format",
        ),
        ({"file": ("a.wav", "SPOKEN")}, {"model": "w", "language": "xx"}, 422, "language: 'xx'"),
        ({"file": ("a.wav", "SPOKEN")}, {"model": "w", "temperature": "3"}, 422, "temperature"),
        ({"file": ("a.wav", "SPOKEN")}, {"model": "w", "stream": "true"}, 422, "stream"),
        ({"file": ("a.wav", "SPOKEN")}, {}, 422, "model"),
        ({}, {"model": "w"}, 422, "file: send the audio"),
        ({"file": ("a.wav", "SILENT")}, {"model": "w"}, 413, "longer than the limit"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(api, files, data, status, words_):
    payload = {"SPOKEN": spoken(), "SILENT": silence_wav(2)}
    files = {k: (name, payload.get(body, body)) for k, (name, body) in files.items()}
    with pytest.MonkeyPatch.context() as patch:
        worker = api.app.state.backend.workers["transcribe"]
        patch.setattr(worker.settings, "max_audio_seconds", 1)
        response = await api.post("/v1/audio/transcriptions", files=files or None, data=data)
    assert response.status_code == status, response.text
    assert words_ in response.json()["error"]["message"]
    assert list(api.storage.listed("audio/")) == []


async def test_an_english_only_model_refuses_to_translate(api):
    """The packaged tiny.en knows English only: a translation is the client's to change (422),
    not a worker failure."""
    with pytest.raises(openai.UnprocessableEntityError, match="English-only"):
        await client(api).audio.translations.create(model="whisper-1", file=("f.wav", spoken()))


def test_the_languages_are_whispers():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert frozenset(_LANGUAGE_CODES) == WHISPER_LANGUAGES


LECTURE = (
    "Welcome to the lecture on serverless computing. Today we deploy a backend to the cloud. "
    "The quick brown fox jumps over the lazy dog."
)


async def job_of(api: Api, job_id: str) -> dict:
    for _ in range(120):  # a poll a second: under the rate limit
        job = (await api.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(1)
    raise AssertionError(f"job {job_id} did not end: {job}")


async def test_an_audio_document_is_transcribed_searched_and_cited(served_api):
    """Audio uploaded as a document: a job transcribes it, its transcript's passages are
    embedded with where they are in the audio, found by search and cited by grounded chat."""
    lecture = encoded(spoken(LECTURE), "mp3")
    response = await served_api.post(
        "/v1/documents",
        files={"file": ("lecture.mp3", lecture)},
        data={"title": "Serverless lecture", "metadata": '{"course": "cloud"}'},
    )
    assert response.status_code == 202, response.text  # audio is always a job
    job = await job_of(served_api, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "audio_document" and job["parts_done"] == job["parts"] >= 2
    document = (await served_api.get(f"/v1/documents/{job['result']['document_id']}")).json()
    assert document["content_type"] == "audio/mpeg" and document["source_id"] == "lecture.mp3"
    assert 6 < document["audio_seconds"] < 14 and document["chunks"] >= 1
    hits = (await served_api.get("/v1/search", params={"q": "serverless lecture", "k": 1})).json()
    [hit] = hits["hits"]
    assert hit["document_id"] == document["id"] and "lecture" in hit["chunk"].lower()
    assert hit["chunk_metadata"]["start"] == 0 and hit["chunk_metadata"]["end"] > 5
    assert hit["metadata"] == {"course": "cloud"}
    chat = await served_api.post(
        "/v1/chat",
        json={"user_id": "u", "message": "What is the lecture about?", "max_tokens": 1,
              "rag": {"k": 1}},
    )  # fmt: skip
    [source] = chat.json()["sources"]
    assert source["chunk_metadata"] == hit["chunk_metadata"]


async def test_silence_as_a_document_fails_its_job_saying_why(served_api):
    response = await served_api.post("/v1/documents", files={"file": ("quiet.wav", silence_wav(2))})
    job = await job_of(served_api, response.json()["job_id"])
    assert job["status"] == "failed" and "no speech" in job["error"], job


async def test_audio_and_transcripts_have_their_own_retention(served_api):
    """After RETENTION_AUDIO_DAYS the raw audio gives way to the transcript's text (the
    document stays searchable); after RETENTION_TRANSCRIPT_DAYS the transcript goes."""
    from sqlalchemy import text

    from tests.app.test_cli import run_cli

    response = await served_api.post(
        "/v1/documents", files={"file": ("fox.flac", encoded(spoken(), "flac"))}
    )
    job = await job_of(served_api, response.json()["job_id"])
    document_id = job["result"]["document_id"]
    engine = served_api.app.state.engine

    async def age(days: int) -> None:
        async with engine.begin() as conn:
            statement = "UPDATE documents SET updated_at = now() - make_interval(days => :days)"
            await conn.execute(
                text(f"{statement} WHERE id = :id"), {"days": days, "id": document_id}
            )

    settings = served_api.app.state.settings
    cli = {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "STORAGE_DIR": str(settings.storage_dir),
        "RETENTION_AUDIO_DAYS": "7",
        "RETENTION_TRANSCRIPT_DAYS": "90",
        "RETENTION_RAW_DAYS": "1",  # not a transcript's
    }
    await age(8)
    done = await asyncio.to_thread(run_cli, "retention", **cli)
    assert f"replaced the audio of document {document_id} ('fox.flac') by its text" in done.stdout
    document = (await served_api.get(f"/v1/documents/{document_id}")).json()
    assert document["content_type"] == "text/plain" and document["audio_seconds"] > 2
    async with engine.connect() as conn:
        key = await conn.scalar(
            text("SELECT object_key FROM documents WHERE id = :id"), {"id": document_id}
        )
    assert key.endswith(".txt") and "fox" in words(served_api.storage.get(key).decode())
    assert not [key for key, _ in served_api.storage.listed("documents/") if key.endswith(".flac")]
    await age(91)
    done = await asyncio.to_thread(run_cli, "retention", **cli)
    assert f"deleted transcript {document_id}" in done.stdout, done.stdout
    assert (await served_api.get(f"/v1/documents/{document_id}")).status_code == 404
