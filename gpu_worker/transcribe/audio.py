"""Audio decoding with PyAV (FFmpeg's libraries, no shell-out): any container and codec FFmpeg
reads (wav, mp3, m4a, flac, ogg, webm...) as 16 kHz mono float32, a window at a time."""

import io
from collections.abc import Iterator

import av
import numpy as np

from gpu_worker.common.refusal import Refused, TooLarge

SAMPLE_RATE = 16_000
CUT_SEARCH_S = 5.0  # a window ends at the quietest moment of its last seconds
CUT_FRAME_S = 0.1


class AudioError(Refused):
    """An input that is not decodable audio."""


class AudioTooLong(AudioError, TooLarge):
    """Audio over the duration limit."""


def _samples(data: bytes) -> Iterator[np.ndarray]:
    """The decoded audio as 16 kHz mono float32 blocks."""
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise AudioError(f"cannot decode the audio: {exc.strerror or type(exc).__name__}") from exc
    with container:
        if not container.streams.audio:
            raise AudioError("the file has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for resampled in resampler.resample(frame):
                    yield resampled.to_ndarray().reshape(-1)
            for resampled in resampler.resample(None):
                yield resampled.to_ndarray().reshape(-1)
        except av.FFmpegError as exc:
            raise AudioError(f"the audio is corrupt: {exc.strerror or type(exc).__name__}") from exc


def _quietest_cut(audio: np.ndarray, search: int, frame: int) -> int:
    """Where to cut `audio`: the start of its quietest `frame` in its last `search` samples."""
    start = max(0, len(audio) - search)
    tail = audio[start : start + (len(audio) - start) // frame * frame]
    if len(tail) < frame:
        return len(audio)
    energy = np.square(tail.reshape(-1, frame)).mean(axis=1)
    return start + int(np.argmin(energy)) * frame


def windows(data: bytes, window_s: float, max_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """(offset in seconds, samples) of the audio in `data`, about `window_s` at a time; at most
    `window_s` plus one decoded block is held. AudioError when it does not decode or is empty,
    AudioTooLong past `max_s`."""
    window, search = int(window_s * SAMPLE_RATE), int(CUT_SEARCH_S * SAMPLE_RATE)
    frame = int(CUT_FRAME_S * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    held = offset = 0
    for block in _samples(data):
        pending.append(block)
        held += len(block)
        if (offset + held) / SAMPLE_RATE > max_s:
            raise AudioTooLong(f"the audio is longer than the limit of {max_s:g} s")
        while held >= window + search:
            audio = np.concatenate(pending)
            cut = _quietest_cut(audio[: window + search], search, frame)
            yield offset / SAMPLE_RATE, audio[:cut]
            offset += cut
            pending, held = [audio[cut:]], len(audio) - cut
    if offset + held == 0:
        raise AudioError("the audio is empty: it holds no samples")
    if held:
        yield offset / SAMPLE_RATE, np.concatenate(pending)
