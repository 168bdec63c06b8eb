"""The development worker: a deterministic stand-in for the llm and clip workers.

It runs no model. Chat answers echo the last user message and embeddings are derived from a
hash of the input, so `make dev` and the tests exercise the whole job flow (queue, streaming,
HMAC signing, errors) with no weights. Both answers carry the model id `tandem-dev-echo`.
"""

from gpu_worker.dev.handler import handle

__all__ = ["handle"]
