"""A tiny random Llama (2 layers, head_dim 64, a 512-token BPE tokenizer with a chat template)
saved as a model directory that vLLM loads like any hub model. It talks nonsense, fast: the
tests use it, and local mode serves it when LLM_MODEL cannot be loaded offline."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>"
    "{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "Tandem deploys a FastAPI service to Cloud Run and GPU workers to RunPod serverless.",
    "Postgres with pgvector stores conversations, documents and their embeddings.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the mat.",
    "Hello, how are you today? I am fine, thank you, and you?",
    "Pulumi declares buckets, secrets, databases and endpoints as Python code.",
] * 20


def build_tiny_llama(directory: Path, vocab_size: int = 512) -> Path:
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: the CPU attention backend rejects 16
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Special tokens get zero logits (tied embeddings), so they are never the likeliest:
        # greedy decoding writes visible text instead of repeating a token that decodes to "".
        model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids(SPECIAL)] = 0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
