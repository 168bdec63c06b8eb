"""A word-level tokenizer for the tiny random models the tests build and local mode serves when
the configured model cannot be loaded offline (CLIP, diffusion pipelines)."""

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

WORDS = ["a", "an", "the", "cat", "dog", "car", "red", "blue", "photo", "of", "on", "mat", "sky",
         "tree"]  # fmt: skip


def word_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    """WORDS and four special tokens; each text framed by [BOS] and [EOS]."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3} | {
        word: i + 4 for i, word in enumerate(WORDS)
    }
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=max_length,
    )
