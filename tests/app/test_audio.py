"""OpenAI's audio routes on the real transcribe worker in-process (the packaged Whisper tiny.en)
with the official `openai` client: every response format, words, and every refusal before
anything is stored or run (stored audio: test_audio_jobs.py)."""

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
