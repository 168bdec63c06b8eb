"""Sections into chunks of at most `max_tokens` tokens that overlap by about `overlap` tokens.

Tokens are words and punctuation marks (`\\w+|[^\\w\\s]`): a close, tokenizer-free count of
what an embedding model reads (WordPiece splits rare words further, so chunks stay a little
under the model's context; the worker cuts anything longer). Chunks break between sentences
where they can, and each keeps the heading path of its section.
"""

import re
from dataclasses import dataclass
from typing import Any

from app.ingest.parse import Section

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


@dataclass(frozen=True)
class Chunk:
    heading: str
    content: str
    metadata: dict[str, Any] | None = None  # a transcript's passage: {start, end} in seconds


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _pieces(text: str, max_tokens: int) -> list[tuple[str, int]]:
    """Sentences with their token counts; a sentence over `max_tokens` is cut into runs."""
    pieces = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        tokens = list(_TOKEN.finditer(sentence))
        for start in range(0, len(tokens), max_tokens):
            run = tokens[start : start + max_tokens]
            if run:
                pieces.append((sentence[run[0].start() : run[-1].end()], len(run)))
    return pieces


def chunk_sections(sections: list[Section], max_tokens: int, overlap: int) -> list[Chunk]:
    chunks = []
    for section in sections:
        window: list[tuple[str, int]] = []
        size = 0
        fresh = False  # the window holds a sentence not yet in a chunk
        for piece, tokens in _pieces(section.text, max_tokens):
            if size + tokens > max_tokens and fresh:
                chunks.append(Chunk(section.heading, " ".join(p for p, _ in window)))
                # Keep the last sentences, up to `overlap` tokens, to start the next chunk.
                kept: list[tuple[str, int]] = []
                size = 0
                for old, old_tokens in reversed(window):
                    if size + old_tokens > overlap or size + old_tokens + tokens > max_tokens:
                        break
                    kept.insert(0, (old, old_tokens))
                    size += old_tokens
                window, fresh = kept, False
            window.append((piece, tokens))
            size += tokens
            fresh = True
        if fresh:
            chunks.append(Chunk(section.heading, " ".join(p for p, _ in window)))
    return chunks
