"""Speech made at test time: espeak-ng speaks a sentence to WAV (make test installs it), and
PyAV encodes it into the other containers users upload. Nothing is downloaded."""

import io
import shutil
import subprocess
import wave
from functools import cache

import av
import numpy as np
import pytest

FOX = "the quick brown fox jumps over the lazy dog"
# container format -> (codec, file extension)
ENCODINGS = {
    "mp3": ("libmp3lame", "mp3"),
    "ipod": ("aac", "m4a"),
    "flac": ("flac", "flac"),
    "ogg": ("libopus", "ogg"),
    "webm": ("libopus", "webm"),
}


ESPEAK_RATE = 22_050  # what espeak-ng speaks at


@cache
def spoken(text: str = FOX) -> bytes:
    """`text` spoken by espeak-ng, as WAV bytes; the test skips where espeak-ng is missing."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (make test installs it with apt-get)")
    return subprocess.run(
        [espeak, "--stdout", text], check=True, capture_output=True, timeout=60
    ).stdout


def encoded(wav: bytes, container: str) -> bytes:
    """`wav` re-encoded into `container` (a key of ENCODINGS)."""
    codec, _ = ENCODINGS[container]
    out = io.BytesIO()
    with av.open(io.BytesIO(wav)) as source, av.open(out, "w", format=container) as target:
        stream = target.add_stream(codec, rate=48_000 if codec in ("aac", "libopus") else 22_050)
        if codec != "flac":
            stream.bit_rate = 128_000  # lossy at a rate a recording would have
        for frame in source.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue()


def wav_of(samples: np.ndarray, rate: int = ESPEAK_RATE) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((samples * 32767).astype("<i2").tobytes())
    return out.getvalue()


def silence_wav(seconds: float) -> bytes:
    """A WAV file of `seconds` of silence (0 s: a valid file with no samples)."""
    return wav_of(np.zeros(int(seconds * ESPEAK_RATE), dtype=np.float32))


def joined(*wavs: bytes) -> bytes:
    """WAV files of espeak-ng's rate, one after the other, as one."""
    frames = []
    for data in wavs:
        with wave.open(io.BytesIO(data)) as file:
            assert file.getframerate() == ESPEAK_RATE
            frames.append(file.readframes(file.getnframes()))
    samples = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float32) / 32767
    return wav_of(samples)


def words(text: str) -> set[str]:
    return {word.strip(".,!?").lower() for word in text.split()}
