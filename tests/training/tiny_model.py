"""A tiny Llama-style causal LM (~100K parameters) and its tokenizer, built offline in well under a second.

The tokenizer is a byte-level BPE trained on the test records plus some Python, so it covers any text
(HumanEval prompts included) while keeping the vocabulary, and so the model, small.
"""

from __future__ import annotations

from pathlib import Path

EOS = "<|endoftext|>"


def memorizable_records(count: int = 12) -> list[dict[str, str]]:
    """Short Alpaca records, with and without input, that a tiny model learns in a few dozen steps."""
    records = []
    for i in range(count):
        records.append(
            {
                "instruction": f"Write a Python function add_{i} that adds {i} to its argument.",
                "input": f"x = {i}" if i % 2 else "",
                "output": f"def add_{i}(x):\n    return x + {i}\n",
                "task": "code generation",  # extra fields, as an export may carry, are ignored
            }
        )
    return records


def build_tiny_model(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny LlamaForCausalLM and its tokenizer to `folder`; return it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in memorizable_records()]
    corpus += [
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n### Input:\n### Response:\n",
        'from typing import List\n\n\ndef f(numbers: List[float]) -> bool:\n    """ Check it.\n'
        '    >>> f([])\n    False\n    """\n    for i in range(len(numbers)):\n        return True\n',
    ]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus, vocab_size=512, min_frequency=1, special_tokens=[EOS], show_progress=False
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, pad_token=EOS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
