"""The LLM worker: chat generation and text embeddings on vLLM's async engine."""
