"""Audio that workers read from storage, on the API served over HTTP (the worker downloads
the stored copy by its signed URL): large files, async transcriptions, audio documents and
their retention. A module of its own, so that no other API instance's job poller shares its
database (an instance with other storage would take its jobs)."""

import asyncio

from tests.app.test_audio import client
from tests.conftest import Api
from tests.speech import encoded, silence_wav, spoken, words


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
