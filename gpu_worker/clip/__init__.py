"""The CLIP worker: image and text embeddings with `transformers` CLIP."""
