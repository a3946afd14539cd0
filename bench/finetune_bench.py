"""Fine-tuning throughput: tokens/s and MFU with and without sequence packing (issue 7).

One command on a GPU machine (the project's requirements installed, with the machine's CUDA torch):

    python bench/finetune_bench.py              # ~1.1B Llama, bf16, 2048 tokens; a few minutes on an H100
    python bench/finetune_bench.py --cpu-smoke  # a tiny config on the CPU, seconds: proves the script runs

Each mode trains the same model with `training.finetune.build_trainer` (TRL's SFTTrainer, the code path of
real runs) on synthetic, pre-tokenized instances and times optimizer steps after a few warm-up steps:

- padded: WaveCoder's setup, no packing; each micro-batch is padded to its longest instance;
- packed: TRL's best-fit-decreasing packing into rows of max_length tokens, padding-free (position_ids
  restart per instance; FlashAttention's varlen kernel when flash-attn is installed, else flex_attention,
  which skips the masked blocks: the attention a real packed run picks, TrainConfig.attention);
- padded-max (optional, --modes): every instance padded to max_length, as scripts using
  `padding="max_length"` do.

tokens/s counts real tokens only (prompt and response, no padding), across all GPUs. MFU is
6 · N · tokens/s / peak bf16 FLOP/s, with N the parameters less the input embedding (a lookup) and
attention's own FLOPs left out, so it slightly understates the work done. Peaks (dense bf16): H100 SXM and
H200 989 TFLOP/s, H100 PCIe 756, A100 312; others need --peak-tflops.

The length mix is CodeOcean-like: an instance is the Alpaca template (~45 tokens), a one- or two-sentence
instruction, an input (raw code of 50–800 characters, or a short description) and an output (code with
comments), so lengths are drawn log-normally around a median of ~300 tokens (σ 0.55: mean ~350,
95th percentile ~740, clipped to [64, max_length]); the prompt is 35–60% of each instance and is masked
from the loss, as in training.

Target (issue 7): packed tokens/s at least 2× the padded baseline's. Most of the gain is padding that is
no longer computed: with σ 0.55, a random micro-batch of 8 is ~50% padding (4, WaveCoder's batch per
device: ~39%; 16: ~58%); the table shows the measured share. Each mode uses the attention a real run of
that kind picks (`TrainConfig.attention`: FlashAttention 2 when installed; else SDPA padded, flex_attention
packed); `--attention sdpa` forces one for all modes (SDPA computes a packed row's attention densely under
a block-diagonal mask). Measured figures: bench/RESULTS.md; `bash bench/gpu_check.sh` runs every variant.
The GPU machine needs the packages of requirements.txt beside its own CUDA torch (trl, peft, datasets).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Dense bf16 peaks (NVIDIA data sheets), matched against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("A100", 312.0))

# ~1.1B parameters (TinyLlama's shape): 22 layers, hidden 2048, grouped-query attention with 4 KV heads.
LLAMA_1B = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}
LLAMA_TINY = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


@dataclass
class Measurement:
    mode: str
    attention: str
    per_device_batch: int
    steps: int
    tokens: int  # real tokens in the timed steps
    seconds: float
    padding_share: float  # of the tokens computed, the share that was padding

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def codeocean_lengths(
    count: int, *, median: float, sigma: float, low: int, high: int, seed: int
) -> np.ndarray:
    """Instance lengths in tokens: log-normal around `median`, clipped to [low, high]."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(median), sigma, count), low, high).astype(int)


def synthetic_dataset(lengths: np.ndarray, vocab_size: int, seed: int):
    """Pre-tokenized prompt-completion instances: random tokens, the prompt (35–60%) masked from the loss."""
    import datasets

    rng = np.random.default_rng(seed + 1)
    rows = {"input_ids": [], "completion_mask": []}
    for length in lengths:
        prompt = int(length * rng.uniform(0.35, 0.6))
        rows["input_ids"].append(rng.integers(3, vocab_size, int(length)).tolist())
        rows["completion_mask"].append([0] * prompt + [1] * (int(length) - prompt))
    return datasets.Dataset.from_dict(rows)


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer with the model's vocabulary size: the trainer needs its pad and EOS tokens."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def build_model(shape: dict, attention: str, device: str):
    """A randomly initialized Llama from a config (no download), float32 master weights on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**shape, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32)


def trained_parameters(model) -> int:
    """N for 6·N·tokens: every parameter except the input embedding, which is a lookup."""
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def peak_flops(hardware, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if hardware.device != "cuda":
        return None
    for name, tflops in PEAK_BF16_TFLOPS:
        if name in hardware.name:
            return tflops * 1e12
    return None


def measure(mode: str, model, tokenizer, dataset, options, hardware) -> Measurement:
    """Train `warmup + steps` optimizer steps in `mode`; time the last `steps` from TRL's token counts."""
    from transformers import TrainerCallback

    from training.finetune import TrainConfig, build_trainer

    batch = options.packed_batch if mode == "packed" else options.padded_batch
    attention = mode_attention(mode, options.attention, hardware)
    model.set_attn_implementation(attention)
    marks: list[tuple[float, float]] = []  # (time, cumulative real tokens) after each step's log

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                if hardware.device == "cuda":
                    import torch

                    torch.cuda.synchronize()
                marks.append((time.perf_counter(), float(logs["num_tokens"])))

    with tempfile.TemporaryDirectory(prefix="finetune-bench-") as output_dir:
        config = TrainConfig(
            dataset_paths=[],
            output_dir=output_dir,
            base_model="(built from a config)",
            per_device_batch_size=batch,
            global_batch_size=batch * options.accumulation,
            max_steps=options.warmup + options.steps,
            warmup_steps=0,
            save_steps=10**9,  # no checkpoints: they would be timed too
            save_total_limit=None,
            max_length=options.max_length,
            packing=mode == "packed",
            gradient_checkpointing=options.gradient_checkpointing,
            bf16=None if hardware.device == "cuda" else False,
            attn_implementation=attention,
            seed=options.seed,
        )
        trainer = build_trainer(config, model, tokenizer, dataset, hardware=hardware, callbacks=[Clock()])
        trainer.args.save_strategy = "no"  # nor the save at the end of training
        if mode == "padded-max":
            trainer.data_collator.pad_to_multiple_of = options.max_length
        trainer.train()
    if len(marks) < options.warmup + 2:
        raise RuntimeError(f"{mode}: only {len(marks)} steps were logged")
    (start, tokens_before), (end, tokens_after) = marks[options.warmup - 1], marks[-1]
    tokens = int(tokens_after - tokens_before)
    computed = _computed_tokens(mode, dataset, batch, options.max_length, options.seed)
    return Measurement(
        mode=mode,
        attention=attention,
        per_device_batch=batch,
        steps=len(marks) - options.warmup,
        tokens=tokens,
        seconds=end - start,
        padding_share=1 - computed,
    )


def mode_attention(mode: str, forced: str | None, hardware) -> str:
    """`forced`, else what a real run of this mode picks on this hardware (TrainConfig.attention)."""
    from training.finetune import TrainConfig

    config = TrainConfig(dataset_paths=[], output_dir="", packing=mode == "packed")
    return forced or config.attention(hardware)


def _computed_tokens(mode: str, dataset, batch: int, max_length: int, seed: int) -> float:
    """The share of computed positions that hold real tokens, over random micro-batches of the data."""
    if mode == "packed":
        return 1.0  # padding-free: rows are concatenated, nothing is padded
    lengths = np.array([min(len(ids), max_length) for ids in dataset["input_ids"]])
    np.random.default_rng(seed).shuffle(lengths)
    batches = lengths[: len(lengths) // batch * batch].reshape(-1, batch)
    padded = batches.shape[0] * batch * max_length if mode == "padded-max" else (batches.max(1) * batch).sum()
    return float(batches.sum() / padded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="a tiny config on the CPU")
    parser.add_argument(
        "--modes", default="padded,packed", help="comma-separated: padded, packed, padded-max"
    )
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--median-tokens", type=float, default=300)
    parser.add_argument("--sigma", type=float, default=0.55)
    parser.add_argument("--padded-batch", type=int, default=8, help="instances per device and micro-batch")
    parser.add_argument(
        "--packed-batch",
        type=int,
        default=None,
        help="packed rows per micro-batch (default: 4 with FlashAttention, else 1: without a varlen kernel "
        "the rows of a micro-batch become one long sequence)",
    )
    parser.add_argument("--accumulation", type=int, default=4, help="micro-batches per optimizer step")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=12, help="timed steps")
    parser.add_argument(
        "--attention",
        choices=("sdpa", "eager", "flash_attention_2", "flex_attention"),
        default=None,
        help="one for every mode; default: what a real run picks (flash_attention_2 when flash-attn is "
        "installed, else sdpa padded and flex_attention packed)",
    )
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the accelerator's dense bf16 peak")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    from training.finetune import Hardware

    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    hardware = Hardware.detect()
    if options.cpu_smoke:
        hardware = Hardware(device="cpu", gpus=0, bf16=False, flash_attention=False, name="cpu")
        shape = LLAMA_TINY
        options.max_length = min(options.max_length, LLAMA_TINY["max_position_embeddings"])
        options.median_tokens, options.instances = 40, min(options.instances, 400)
        options.warmup, options.steps, options.accumulation = 1, min(options.steps, 4), 2
        options.packed_batch = options.packed_batch or 2  # 512 positions, like 8 padded instances
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    elif hardware.device != "cuda":
        parser.error("no GPU here: run with --cpu-smoke for the tiny CPU configuration")
    else:
        shape = LLAMA_1B
    if options.packed_batch is None:  # without a varlen kernel a micro-batch's rows form one long sequence
        packed_attention = mode_attention("packed", options.attention, hardware)
        options.packed_batch = {"flash_attention_2": 4, "flex_attention": 2}.get(packed_attention, 1)

    lengths = codeocean_lengths(
        options.instances,
        median=options.median_tokens,
        sigma=options.sigma,
        low=min(64, options.max_length // 16),
        high=options.max_length,
        seed=options.seed,
    )
    dataset = synthetic_dataset(lengths, shape["vocab_size"], options.seed)
    tokenizer = synthetic_tokenizer(shape["vocab_size"])
    device = "cuda" if hardware.device == "cuda" else "cpu"
    started = time.perf_counter()
    model = build_model(shape, options.attention or "sdpa", device)  # each mode sets its own
    n = trained_parameters(model)
    peak = peak_flops(hardware, options.peak_tflops)
    processes = 1  # one process; MFU is per GPU
    print(
        f"device: {hardware.name or hardware.device}; model: Llama, {_count(n)} trained parameters "
        f"(built in {time.perf_counter() - started:.0f} s); "
        f"bf16: {hardware.device == 'cuda' and hardware.bf16}; gradient checkpointing: "
        f"{options.gradient_checkpointing}"
    )
    print(
        f"data: {len(lengths)} instances, tokens median {np.median(lengths):.0f}, mean {lengths.mean():.0f}, "
        f"p95 {np.percentile(lengths, 95):.0f}, max length {options.max_length}; accumulation "
        f"{options.accumulation}; {options.warmup} warm-up + {options.steps} timed steps per mode"
    )

    results = []
    for mode in [m.strip() for m in options.modes.split(",") if m.strip()]:
        if mode not in ("padded", "packed", "padded-max"):
            parser.error(f"unknown mode {mode!r}")
        results.append(measure(mode, model, tokenizer, dataset, options, hardware))
        if device == "cuda":
            torch.cuda.empty_cache()

    baseline = next((r for r in results if r.mode == "padded"), results[0])
    header = (
        f"{'mode':<11} {'attention':<17} {'batch':>5} {'steps':>5} {'real tokens':>12} {'tokens/s':>10} "
        f"{'MFU':>6} {'padding':>8} {'vs padded':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        mfu = f"{6 * n * r.tokens_per_s / (peak * processes):.1%}" if peak else "n/a"
        print(
            f"{r.mode:<11} {r.attention:<17} {r.per_device_batch:>5} {r.steps:>5} {r.tokens:>12,} "
            f"{r.tokens_per_s:>10,.0f} {mfu:>6} {r.padding_share:>8.0%} "
            f"{r.tokens_per_s / baseline.tokens_per_s:>8.2f}×"
        )
    if not peak:
        print("MFU: unknown peak for this device; pass --peak-tflops")
    packed = next((r for r in results if r.mode == "packed"), None)
    if packed and baseline.mode == "padded":
        ratio = packed.tokens_per_s / baseline.tokens_per_s
        print(f"packing / padded: {ratio:.2f}× (target ≥ 2×: {'met' if ratio >= 2 else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
