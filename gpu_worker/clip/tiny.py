"""A tiny random CLIP (32x32 images, a word-level tokenizer) saved as a model directory that
`transformers` loads exactly as it loads openai/clip-vit-base-patch32: the tests use it, and
local mode serves it when CLIP_MODEL cannot be loaded offline."""

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from gpu_worker.common.tiny import word_tokenizer


def build_tiny_clip(directory: Path) -> Path:
    tokenizer = word_tokenizer(16)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=512,  # CLIP ViT-B/32's, so the tables fit either model
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(directory)
    return directory
