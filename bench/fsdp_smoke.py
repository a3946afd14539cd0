"""Multi-GPU check of the training path: FSDP or DDP through `accelerate launch`, checkpoint, resume, reload.

    python bench/fsdp_smoke.py                      # every GPU of this machine, FSDP full shard
    python bench/fsdp_smoke.py --strategy ddp       # plain data parallel
    python bench/fsdp_smoke.py --processes 1        # FSDP on one GPU (still launched through accelerate)

It runs the command a training run's worker runs (`training.finetune.launch_command`, so
training/accelerate/fsdp.yaml or ddp.yaml) twice on a tiny Llama built from a config (no download):

1. 10 optimizer steps on records it can memorize, a checkpoint every 5 steps, then the final model;
2. the same run asked for 20 steps: it must resume from checkpoint-10 (FULL_STATE_DICT checkpoints) and
   go on to step 20.

Then it checks that the loss went down, that the second run resumed, and that the final model loads with
`from_pretrained` and generates. It prints one line per check and exits 1 when one fails. Needs GPUs (the
accelerate configs are for CUDA); a CPU machine gets a clear error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_training(config, folder: Path, strategy: str) -> dict:
    from training import finetune

    config_path = folder / f"run-{config.max_steps}.json"
    config.save(config_path)
    command = finetune.launch_command(config, config_path, strategy=strategy, launcher=True)
    print("$", " ".join(command), flush=True)
    started = time.monotonic()
    completed = subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print(f"  exit {completed.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    result = finetune.read_result(config.output_dir) or {}
    if completed.returncode != 0 or result.get("status") != finetune.COMPLETED:
        tail = (Path(config.output_dir) / finetune.LOG_FILE).read_text(errors="replace")[-3000:]
        raise SystemExit(f"training did not complete: {finetune.describe_exit(completed.returncode)}\n{tail}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=None, help="default: every GPU")
    parser.add_argument("--strategy", choices=("fsdp", "ddp"), default="fsdp")
    parser.add_argument("--keep", type=Path, default=None, help="a folder to keep the run in")
    options = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        parser.error("no GPU here: the accelerate configs are for CUDA (CPU training is tested by the suite)")
    processes = options.processes or torch.cuda.device_count()
    from tests.training.tiny_model import build_tiny_model, memorizable_records
    from training.finetune import FINAL_DIR, TrainConfig

    folder = options.keep or Path(tempfile.mkdtemp(prefix="fsdp-smoke-"))
    folder.mkdir(parents=True, exist_ok=True)
    base = build_tiny_model(folder / "base")
    data = folder / "records.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in memorizable_records(16)))
    print(f"{options.strategy} on {processes} × {torch.cuda.get_device_name(0)}; run folder {folder}")

    def config(steps: int) -> TrainConfig:
        return TrainConfig(
            dataset_paths=[str(data)],
            output_dir=str(folder / "run"),
            base_model=str(base),
            learning_rate=5e-3,
            lr_scheduler="constant",
            warmup_steps=0,
            per_device_batch_size=4,
            global_batch_size=4 * processes,
            num_processes=processes,
            max_length=256,
            max_steps=steps,
            save_steps=5,
            save_total_limit=None,
            gradient_checkpointing=True,
        )

    first = run_training(config(10), folder, options.strategy)
    second = run_training(config(20), folder, options.strategy)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = folder / "run" / FINAL_DIR
    model = AutoModelForCausalLM.from_pretrained(final, local_files_only=True).to("cuda")
    tokenizer = AutoTokenizer.from_pretrained(final, local_files_only=True)
    prompt = tokenizer("Write a Python function add_3", return_tensors="pt").to("cuda")
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(generated[0][prompt["input_ids"].shape[1] :])

    checks = [
        (
            "loss went down",
            second["final_loss"] < first["first_loss"],
            f"{first['first_loss']:.3f} at step 1 → {first['final_loss']:.3f} at step 10 → "
            f"{second['final_loss']:.3f} at step 20",
        ),
        (
            "second run resumed from checkpoint-10",
            (second.get("resumed_from") or "").endswith("checkpoint-10") and second["global_step"] == 20,
            f"resumed_from {second.get('resumed_from')}, global step {second['global_step']}",
        ),
        ("final model loads and generates", bool(text), f"{text!r}"),
    ]
    failed = 0
    for name, ok, detail in checks:
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    print(f"tokens/s (median step, all GPUs): {first.get('tokens_per_s')} then {second.get('tokens_per_s')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
