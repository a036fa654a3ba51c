"""A tiny randomly initialised Llama and a small BPE tokenizer with a ChatML template.

Built in the test, saved as safetensors, loaded by the harness like any local checkpoint:
no downloads, a few seconds on a CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

CORPUS = [
    "the cat sat on the mat", "scientists unveil doomsday clock of hair loss", "area man wins nothing again",
    "report: nation tired", "senate passes budget bill", "local dog elected mayor", "stocks fall on rate fears",
    "you label news headlines. answer with the label only: 1 or 0.", "0 1 yes no positive negative",
    "system user assistant", "what is the capital of france? paris", "respond with only a 1 or 0",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def build_model_dir(path: Path, seed: int = 0) -> Path:
    """Save a tiny Llama (2 layers, hidden 64) with its tokenizer to `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                         initializer_range=0.3)  # larger than usual so frozen logits can move far
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_classification_jsonl(path: Path, n: int = 80, seed: int = 0) -> Path:
    """A learnable toy task: headlines with 'area man' or 'report:' are sarcastic (1)."""
    import random

    rng = random.Random(seed)
    subjects = ["cat", "dog", "senate", "nation", "mayor", "stocks", "scientists", "clock", "budget", "mat"]
    rows = []
    for i in range(n):
        label = i % 2
        subject = rng.choice(subjects)
        text = f"area man {subject} {i}" if label else f"senate {subject} bill {i}"
        rows.append({"text": text, "label": str(label)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
