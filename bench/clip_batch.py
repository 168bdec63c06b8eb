"""CLIP images per second: one batch of 16 images per call versus one image per call, through
the worker's handler, measured side by side in one run.

The model is openai/clip-vit-base-patch32's architecture (CLIPConfig's defaults) with random
weights built here: the real amount of compute, no download. Images go in as base64 so the
figure is inference, not network.

    .venv/bin/python bench/clip_batch.py [--rounds 3]
"""

import argparse
import asyncio
import base64
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gpu_worker.clip.handler as clip  # noqa: E402
from gpu_worker.clip.settings import ClipSettings  # noqa: E402
from gpu_worker.clip.tiny import build_tiny_clip  # noqa: E402

BATCH = 16


def build_base_clip(directory: Path) -> Path:
    """ViT-B/32-sized CLIP with random weights, the tiny model's tokenizer."""
    build_tiny_clip(directory)  # tokenizer files
    torch.manual_seed(0)
    config = CLIPConfig()
    config.text_config.vocab_size = 18
    CLIPModel(config).save_pretrained(directory)
    CLIPImageProcessor().save_pretrained(directory)
    return directory


def images() -> list[str]:
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(BATCH):
        pixels = rng.integers(0, 255, size=(256, 320, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    return encoded


async def images_per_second(
    worker: clip.ClipWorker, data: list[str], batched: bool, rounds: int
) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        if batched:
            result = await worker.handle({"id": "b", "input": {"images": data}})
            assert "error" not in result, result
        else:
            for item in data:
                result = await worker.handle({"id": "s", "input": {"image_base64": item}})
                assert "error" not in result, result
    return rounds * len(data) / (time.perf_counter() - started)


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        worker = clip.ClipWorker(ClipSettings(model_name=str(build_base_clip(Path(tmp)))))
        worker.load()
        data = images()
        await images_per_second(worker, data[:2], batched=True, rounds=1)  # warm-up
        single = await images_per_second(worker, data, batched=False, rounds=rounds)
        batched = await images_per_second(worker, data, batched=True, rounds=rounds)
    print(f"one image per call     {single:8.2f} images/s")
    print(f"{BATCH} images per call    {batched:8.2f} images/s")
    print(f"batched / single: {batched / single:.2f}x (target >= 3x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
