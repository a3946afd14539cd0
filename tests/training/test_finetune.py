"""Fine-tuning engine, end to end on the CPU with a tiny model: loss, checkpoints, resume, stop, LoRA,
packing, validation and the errors people see."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.tiny_model import build_tiny_model, memorizable_records
from training import finetune
from training.finetune import (
    ALPACA_PROMPT_NO_INPUT,
    Hardware,
    TrainConfig,
    TrainingError,
    last_checkpoint,
    load_records,
    loss_points,
    prompt_completion,
    read_metrics,
    read_result,
    request_cancel,
    train,
)

CPU = Hardware(device="cpu", gpus=0, bf16=True, flash_attention=False, name="cpu")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "version.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in memorizable_records()))
    return path


def _config(tmp_path: Path, model: Path | str, data: Path, /, **overrides) -> TrainConfig:
    """WaveCoder's recipe scaled down to seconds on two cores: a high lr, small batches, few steps."""
    values = {
        "dataset_paths": [str(data)],
        "output_dir": str(tmp_path / "run"),
        "base_model": str(model),
        "learning_rate": 5e-3,
        "global_batch_size": 4,
        "per_device_batch_size": 4,
        "warmup_steps": 2,
        "max_steps": 30,
        "save_steps": 10,
        "max_length": 256,
        "bf16": False,
        "gradient_checkpointing": False,
    }
    return TrainConfig(**{**values, **overrides})


# --- The recipe's defaults and validation --------------------------------------------------------


def test_defaults_are_wavecoders_recipe():
    config = TrainConfig(dataset_paths=["d.jsonl"], output_dir="out")
    assert (config.learning_rate, config.num_epochs, config.max_length) == (5e-5, 3.0, 2048)
    assert (config.warmup_steps, config.lr_scheduler, config.global_batch_size) == (15, "linear", 512)
    assert config.method == "full" and config.packing is False and config.bf16 is None
    assert config.base_model == "smollm2-135m-instruct"
    # 8 GPUs × 4 per device × 16 accumulation, as in the paper
    assert TrainConfig(dataset_paths=[], output_dir="o", num_processes=8).gradient_accumulation_steps == 16


def test_a_valid_configuration_has_no_errors(tmp_path, base_model, dataset):
    assert _config(tmp_path, base_model, dataset).validate(CPU) == []
    assert _config(tmp_path, base_model, dataset, method="lora", lora_r=4).validate(CPU) == []
    # The registered offline model is checked without converting it.
    assert _config(tmp_path, "smollm2-135m-instruct", dataset, max_length=2048).validate(CPU) == []


@pytest.mark.parametrize(
    ("overrides", "hardware", "expected"),
    [
        ({"global_batch_size": 10}, None, "not a multiple of the batch per device"),
        ({"global_batch_size": 512, "per_device_batch_size": 6}, None, "use 510 or 516"),
        ({"lora_r": 8}, None, "apply only to method 'lora'"),
        ({"method": "qlora"}, None, "method must be one of full, lora"),
        ({"method": "lora", "lora_dropout": 1.5}, None, "lora_dropout"),
        ({"learning_rate": 0}, None, "learning rate must be positive"),
        ({"learning_rate": -1e-5}, None, "learning rate must be positive"),
        ({"max_steps": 0}, None, "max_steps must be at least 1"),
        ({"max_length": 4096}, None, "longer than the model's context (1024 positions)"),
        ({"base_model": "/nowhere/model"}, None, "no model at '/nowhere/model'"),
        ({"base_model": "llama-7b"}, None, "not a folder and not a registered model"),
        ({"lr_scheduler": "step"}, None, "schedule must be one of"),
        ({"bf16": True}, Hardware("cpu", 0, bf16=False, flash_attention=False), "no native bf16"),
        ({"bf16": True}, Hardware("cuda", 1, bf16=False, flash_attention=False, name="T4"), "(T4) does not"),
        ({"num_processes": 2, "global_batch_size": 8}, CPU, "2 processes need GPUs"),
        ({"num_processes": 4, "global_batch_size": 16}, Hardware("cuda", 2, True, True), "asks for 4 GPUs"),
        ({"attn_implementation": "flash_attention_2", "packing": True}, CPU, "FlashAttention 2 is not"),
        ({"attn_implementation": "flex_attention", "packing": True}, CPU, "trains only on a GPU"),
    ],
)
def test_invalid_combinations_are_explained(tmp_path, base_model, dataset, overrides, hardware, expected):
    errors = _config(tmp_path, base_model, dataset, **overrides).validate(hardware)
    assert any(expected in error for error in errors), errors


def test_wrong_types_are_named_before_anything_else(tmp_path, base_model, dataset):
    config = TrainConfig.from_dict(
        {**_config(tmp_path, base_model, dataset).to_dict(), "learning_rate": "fast", "packing": "yes"}
    )
    assert config.validate() == [
        "learning_rate must be a number, not 'fast'",
        "packing must be true or false, not 'yes'",
    ]


def test_validation_reads_the_data(tmp_path, base_model):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    errors = _config(tmp_path, base_model, empty).validate()
    assert errors == [f"the dataset is empty: no records in {empty}"]
    missing = _config(tmp_path, base_model, tmp_path / "gone.jsonl").validate()
    assert missing == [f"dataset file not found: {tmp_path / 'gone.jsonl'}"]


def test_config_round_trips_through_run_json(tmp_path, base_model, dataset):
    config = _config(tmp_path, base_model, dataset, method="lora", lora_r=4)
    assert TrainConfig.load(config.save(tmp_path / "run.json")) == config
    (tmp_path / "bad.json").write_text(json.dumps({**config.to_dict(), "epochs": 3}))
    with pytest.raises(TrainingError, match="unknown setting"):
        TrainConfig.load(tmp_path / "bad.json")


# --- Data ----------------------------------------------------------------------------------------


def test_records_become_alpaca_prompts_with_the_output_as_completion(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps([{"instruction": "Say hi.", "input": None, "output": "hi", "language": "en"}]))
    [record] = load_records([path])
    assert record == {"instruction": "Say hi.", "input": "", "output": "hi"}
    pair = prompt_completion(record)
    assert pair == {"prompt": ALPACA_PROMPT_NO_INPUT.format(instruction="Say hi."), "completion": "hi"}
    assert pair["prompt"].endswith("### Response:\n")
    with_input = prompt_completion({"instruction": "Fix it.", "input": "x = ", "output": "x = 1"})
    assert "### Input:\nx = \n\n### Response:\n" in with_input["prompt"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"instruction": "a", "input": ""}\n', "line 1: 'output' is missing or empty"),
        ('{"instruction": "a", "output": "b"}\n{"output": "b"}\n', "line 2: 'instruction' is missing"),
        ('{"instruction": "a", "output": "b"}\nnot json\n', "line 2: not valid JSON"),
        ('{"instruction": "a", "output": "b", "input": 3}\n', "'input' must be text"),
        ("[1, 2]", "record 1: expected an object"),
    ],
)
def test_bad_records_name_the_line(tmp_path, content, expected):
    path = tmp_path / "v.jsonl"
    path.write_text(content)
    with pytest.raises(TrainingError, match=expected) as caught:
        load_records([path])
    assert caught.value.kind == "data"


def test_the_loss_falls_on_the_response_only(tmp_path, base_model, dataset):
    """TRL masks the Alpaca prompt out of the labels; only the output and EOS are trained on."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = _config(tmp_path, base_model, dataset)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    records = memorizable_records(2)
    trainer = finetune.build_trainer(
        config,
        model,
        tokenizer,
        datasets.Dataset.from_list([prompt_completion(r) for r in records]),
        hardware=CPU,
    )
    example = trainer.train_dataset[1]
    trained = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100]
    assert tokenizer.decode(trained) == records[1]["output"] + tokenizer.eos_token
    assert example["labels"][0] == -100


# --- Training ------------------------------------------------------------------------------------


def test_training_memorizes_and_the_final_model_reloads(tmp_path, base_model, dataset):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    events = []
    config = _config(tmp_path, base_model, dataset, max_steps=40)
    result = train(config, progress=events.append)

    assert result.status == "completed" and result.global_step == 40
    assert result.final_loss < 0.35 * result.first_loss, (result.first_loss, result.final_loss)
    output = Path(config.output_dir)
    model = AutoModelForCausalLM.from_pretrained(output / "final")
    assert model.num_parameters() > 0
    AutoTokenizer.from_pretrained(output / "final")
    assert {p.name for p in output.iterdir()} >= {"checkpoint-30", "checkpoint-40", "final", "run.json"}
    assert not (output / "checkpoint-10").exists()  # save_total_limit 2 keeps the last two

    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 40
    assert "checkpoint" in kinds
    step = next(e for e in events if e["event"] == "step" and e["step"] == 10)
    assert step["max_steps"] == 40 and step["epoch"] == pytest.approx(10 / 3, abs=1e-3)
    assert (
        step["learning_rate"] > 0 and step["tokens"] > 0 and step["tokens_per_s"] > 0 and step["eta_s"] >= 0
    )
    # The same events are on disk for a web page: metrics, a loss chart, the log's tail and the result.
    assert read_metrics(output) == events
    assert read_metrics(output, tail=5) == events[-5:]  # read from the file's end
    assert [s for s, _ in loss_points(output)] == list(range(1, 41))
    assert "step 40/40" in (output / "train.log").read_text()
    assert read_result(output)["status"] == "completed"
    assert read_result(output)["model_dir"] == str(output / "final")


def test_a_rerun_resumes_from_the_last_checkpoint(tmp_path, base_model, dataset):
    train(_config(tmp_path, base_model, dataset, max_steps=4, save_steps=2))
    events = []
    result = train(_config(tmp_path, base_model, dataset, max_steps=6, save_steps=2), progress=events.append)

    start = events[0]
    assert start["event"] == "start" and start["step"] == 4
    assert start["resumed_from"].endswith("checkpoint-4") and result.resumed_from.endswith("checkpoint-4")
    assert [e["step"] for e in events if e["event"] == "step"] == [5, 6]
    assert result.global_step == 6 and result.status == "completed"


def test_a_checkpoint_cut_short_is_not_resumed_from(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # killed while saving: no trainer state yet
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text('{"global_st')
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert last_checkpoint(tmp_path / "nothing") is None


def test_should_stop_ends_the_run_early_with_a_checkpoint(tmp_path, base_model, dataset):
    steps = []

    def progress(event):
        if event["event"] == "step":
            steps.append(event["step"])

    result = train(
        _config(tmp_path, base_model, dataset), progress=progress, should_stop=lambda: len(steps) >= 3
    )

    assert result.status == "stopped" and result.global_step == 4
    assert result.model_dir is None and result.last_checkpoint.endswith("checkpoint-4")
    assert not (tmp_path / "run" / "final").exists()
    assert read_result(tmp_path / "run")["status"] == "stopped"


def test_a_cancel_request_from_another_process_stops_the_run(tmp_path, base_model, dataset):
    config = _config(tmp_path, base_model, dataset)
    request_cancel(config.output_dir)  # left over from an earlier run: cleared when a run starts

    def progress(event):
        if event["event"] == "step" and event["step"] == 2:
            request_cancel(config.output_dir)

    result = train(config, progress=progress)
    assert result.status == "stopped" and result.global_step == 3
    assert (Path(config.output_dir) / "checkpoint-3").is_dir()


def test_lora_saves_the_adapter_and_a_merged_model(tmp_path, base_model, dataset):
    import torch
    from transformers import AutoModelForCausalLM

    config = _config(tmp_path, base_model, dataset, method="lora", lora_r=4, max_steps=6, learning_rate=2e-2)
    result = train(config)

    assert result.status == "completed"
    assert (Path(result.adapter_dir) / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_model)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])
    assert not any("lora" in key for key in merged.state_dict())


def test_packing_trains(tmp_path, base_model, dataset):
    result = train(_config(tmp_path, base_model, dataset, packing=True, max_steps=3, per_device_batch_size=2))
    assert result.status == "completed" and result.global_step == 3


def test_attention_defaults_follow_the_hardware_and_packing():
    gpu = Hardware("cuda", 1, bf16=True, flash_attention=False, name="H200")
    flash = dataclasses.replace(gpu, flash_attention=True)
    padded, packed = TrainConfig(dataset_paths=[], output_dir="run"), TrainConfig([], "run", packing=True)
    assert (padded.attention(CPU), packed.attention(CPU)) == ("sdpa", "sdpa")
    assert (padded.attention(gpu), packed.attention(gpu)) == ("sdpa", "flex_attention")
    assert (padded.attention(flash), packed.attention(flash)) == ("flash_attention_2", "flash_attention_2")
    packed.attn_implementation = "eager"
    assert packed.attention(flash) == "eager"


def test_packed_instances_do_not_attend_to_each_other():
    """Packing relies on transformers deriving a block-diagonal mask from restarting position_ids, for
    SDPA, eager and flex attention too (no FlashAttention needed): a packed row gives each instance's
    logits."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    for attention in ("sdpa", "eager", "flex_attention"):  # flex: a packed GPU run's default (compiles)
        config._attn_implementation = attention
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        a, b = torch.randint(0, 64, (1, 7)), torch.randint(0, 64, (1, 5))
        positions = torch.cat([torch.arange(7), torch.arange(5)])[None]
        with torch.no_grad():
            packed = model(torch.cat([a, b], dim=1), position_ids=positions, use_cache=False).logits
            alone_a, alone_b = model(a, use_cache=False).logits, model(b, use_cache=False).logits
        torch.testing.assert_close(packed[:, :7], alone_a)
        torch.testing.assert_close(packed[:, 7:], alone_b)


# --- Failures ------------------------------------------------------------------------------------


def test_an_invalid_configuration_fails_before_loading_anything(tmp_path, base_model, dataset):
    config = _config(tmp_path, base_model, dataset, learning_rate=0, global_batch_size=6)
    with pytest.raises(TrainingError) as caught:
        train(config)
    assert caught.value.kind == "invalid_config" and len(caught.value.errors) == 2
    result = read_result(config.output_dir)
    assert result["status"] == "failed" and result["kind"] == "invalid_config"
    assert read_metrics(config.output_dir)[-1]["event"] == "end"


def test_bad_data_fails_with_a_clear_message(tmp_path, base_model):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
    with pytest.raises(TrainingError, match=r"bad.jsonl, line 2: 'output' is missing or empty") as caught:
        train(_config(tmp_path, base_model, path))
    assert caught.value.kind == "invalid_config"  # found while validating, before anything is loaded


def test_prompts_longer_than_max_length_leave_nothing_to_train_on(tmp_path, base_model, dataset):
    with pytest.raises(TrainingError, match="no record fits in max_length 16") as caught:
        train(_config(tmp_path, base_model, dataset, max_length=16))
    assert caught.value.kind == "data"


def test_a_missing_or_unloadable_model_fails_with_a_clear_message(tmp_path, dataset):
    with pytest.raises(TrainingError, match="no model at") as caught:
        train(_config(tmp_path, tmp_path / "no-such-model", dataset))
    assert "no model at" in caught.value.errors[0]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 512}))
    with pytest.raises(TrainingError, match="could not load the model") as caught:
        train(_config(tmp_path, broken, dataset))
    assert caught.value.kind == "model"
    assert read_result(tmp_path / "run")["kind"] == "model"


def test_out_of_memory_is_reported_as_such(tmp_path, base_model, dataset, monkeypatch):
    import torch
    from transformers import Trainer

    def run_out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", run_out_of_memory)
    with pytest.raises(
        TrainingError, match="out of GPU while training: lower the batch per device"
    ) as caught:
        train(_config(tmp_path, base_model, dataset))
    assert caught.value.kind == "out_of_memory"
    assert isinstance(caught.value.__cause__, torch.OutOfMemoryError)
    assert read_result(tmp_path / "run")["kind"] == "out_of_memory"


def test_exit_statuses_are_explained():
    assert "out-of-memory killer" in finetune.describe_exit(-9)
    assert finetune.describe_exit(-15) == "ended by signal SIGTERM"
    assert finetune.describe_exit(2) == "failed (see result.json)"


# --- Running as a subprocess ---------------------------------------------------------------------


def _start(run_json: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = finetune.launch_command(TrainConfig.load(run_json), run_json)
    return subprocess.Popen(
        command, cwd=finetune.PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_checkpoint(output_dir: str, process: subprocess.Popen, after: int = 0) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = [
            e["step"] for e in read_metrics(output_dir) if e["event"] == "checkpoint" and e["step"] > after
        ]
        if steps:
            return steps[-1]
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError("no checkpoint within 120 s")


def test_a_killed_worker_resumes_and_sigterm_stops_at_a_checkpoint(tmp_path, base_model, dataset):
    config = _config(tmp_path, base_model, dataset, max_steps=100_000, save_steps=2, learning_rate=1e-4)
    run_json = config.save(tmp_path / "run.json")

    # The worker dies (SIGKILL: no goodbye, no result.json) after a checkpoint ...
    process = _start(run_json)
    _wait_for_checkpoint(config.output_dir, process)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and read_result(config.output_dir) is None
    assert "out-of-memory killer" in finetune.describe_exit(process.returncode)
    newest = last_checkpoint(config.output_dir)

    # ... the same run started again continues from the newest checkpoint, and a polite SIGTERM (a worker
    # shutting down) ends its step with a new checkpoint.
    process = _start(run_json)
    step = _wait_for_checkpoint(config.output_dir, process, after=int(newest.name.split("-")[1]))
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result == read_result(config.output_dir)
    assert result["status"] == "stopped" and result["resumed_from"] == str(newest)
    assert (
        result["global_step"] >= step
        and last_checkpoint(config.output_dir).name == f"checkpoint-{result['global_step']}"
    )
    starts = [e for e in read_metrics(config.output_dir) if e["event"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, str(newest)]


def test_the_subprocess_reports_a_bad_configuration(tmp_path, base_model, dataset):
    run_json = _config(tmp_path, base_model, dataset, learning_rate=-1).save(tmp_path / "run.json")
    process = _start(run_json)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == finetune.EXIT_TRAINING_ERROR
    assert "invalid_config: the learning rate must be positive" in stderr


def test_several_gpus_are_launched_through_accelerate_with_a_valid_config():
    from accelerate.commands.config.config_args import load_config_from_file

    config = TrainConfig(dataset_paths=["v.jsonl"], output_dir="run", num_processes=8)
    command = finetune.launch_command(config, "run.json", python="python")
    assert command[:3] == ["python", "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "8"
    assert command[command.index("--fsdp_activation_checkpointing") + 1] == "true"
    assert command[-4:] == ["-m", "training.finetune", "--config", "run.json"]
    fsdp = load_config_from_file(command[command.index("--config_file") + 1])
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    ddp = finetune.launch_command(config, "run.json", strategy="ddp")
    assert load_config_from_file(ddp[ddp.index("--config_file") + 1]).distributed_type == "MULTI_GPU"
    config.num_processes = 1
    assert finetune.launch_command(config, "run.json") == [
        sys.executable,
        "-m",
        "training.finetune",
        "--config",
        "run.json",
    ]
    single = finetune.launch_command(config, "run.json", launcher=True)  # FSDP on one GPU (fsdp_smoke)
    assert single[single.index("--num_processes") + 1] == "1" and "accelerate.commands.launch" in single
