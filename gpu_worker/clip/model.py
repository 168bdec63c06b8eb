"""The CLIP model: loaded once, embeds batches of images and texts on the best device."""

import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

from gpu_worker.common.refusal import Refused, TooLarge


class ImageError(Refused):
    """An input that is not a decodable image."""


class ImageTooLarge(ImageError, TooLarge):
    """An image over the pixel limit."""


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """RGB pixels of `data`; refuses decompression bombs before decoding them."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image of {width}x{height} pixels is over the limit of {max_pixels}"
                )
            return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is over the pixel limit: {exc}") from exc
    except (Image.UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot decode the image: {type(exc).__name__}") from exc


class ClipEmbedder:
    def __init__(self, model_name: str, served_name: str | None = None) -> None:
        self.name = served_name or model_name
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = CLIPModel.from_pretrained(model_name).eval()
        self.model.to(self.device)  # type: ignore[arg-type]  # transformers' wrapper drops self
        self.processor = CLIPImageProcessor.from_pretrained(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.dim = self.model.config.projection_dim

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image], normalize: bool) -> np.ndarray:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        output = self.model.get_image_features(pixel_values=pixels.to(self.device))
        return self._finish(output, normalize)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str], normalize: bool) -> tuple[np.ndarray, int]:
        """The texts' embeddings and how many tokens they were read as."""
        max_length = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        output = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
        )
        return self._finish(output, normalize), int(tokens["attention_mask"].sum())

    @staticmethod
    def _finish(output: Any, normalize: bool) -> np.ndarray:
        # transformers 5 returns the projected embeddings as the output's pooler_output.
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        if normalize:
            features = torch.nn.functional.normalize(features, dim=-1)
        return features.float().cpu().numpy()
