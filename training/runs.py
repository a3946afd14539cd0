"""Training and evaluation runs: the Django side of `training.finetune` and `training.model_eval`.

A `TrainingRun` is created (and checked) by `create_training_run`, queued on the `gpu` queue, and trained
by `run_training` in a worker: it exports the dataset version to Alpaca JSON in the run's folder, writes
run.json, starts `python -m training.finetune` (or `accelerate launch` for several GPUs) in its own
session, and copies each step of metrics.jsonl into the row every `POLL_S` seconds while watching the
run's cancel flag. The training process resumes from its newest checkpoint by itself, so a run whose
worker died is simply started again (`resume_training`, or a redelivered task).

An `EvaluationRun` scores one model on HumanEval (`run_evaluation`, in a `python -m training.model_eval`
subprocess, so an out-of-memory kill leaves the worker alive); "base vs tuned" is two of them made
together by `create_comparison`, compared per problem by `comparison` through `model_eval.side_by_side`.

Web views, API endpoints, Celery tasks and management commands all call these functions.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from curation.models import ProgressReporter, process_alive
from curation.params import SEED_MAX
from training import exports, finetune
from training.finetune import TrainConfig
from training.models import DatasetVersion, EvaluationRun, TrainingRun

logger = logging.getLogger(__name__)

POLL_S = 1.0
DATA_DIR = "data"  # the exported version inside a run's folder
PROCESS_LOG = "process.log"  # the subprocess's own stdout and stderr (tracebacks, launcher output)
# A run whose worker has not written for this long lost its worker: it may be resumed or re-claimed.
HEARTBEAT_STALE_S = 60
# How long a cancelled run may take to end its step and save a checkpoint before SIGTERM, then SIGKILL.
CANCEL_GRACE_S = 60
TERM_GRACE_S = 30

_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout")
HYPERPARAMETERS = (
    "learning_rate",
    "num_epochs",
    "max_steps",
    "max_length",
    "warmup_steps",
    "lr_scheduler",
    "global_batch_size",
    "per_device_batch_size",
    "bf16",
    "packing",
    "gradient_checkpointing",
    "seed",
    "save_steps",
    *_LORA_FIELDS,
    "num_processes",
    "strategy",
)
# The range of each whole-number setting: their columns hold more, no run needs more.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "max_steps": (1, 10_000_000),
    "max_length": (16, 1_048_576),  # tokens: the longest contexts models have
    "warmup_steps": (0, 10_000_000),
    "global_batch_size": (1, 1_048_576),
    "per_device_batch_size": (1, 65_536),
    "seed": (0, SEED_MAX),
    "save_steps": (1, 10_000_000),
    "lora_r": (1, 4096),
    "num_processes": (1, 1024),
}
# Small values that train SmolLM2-135M for a few minutes on a laptop CPU (see the README's Stage 5).
CPU_DEMO_PRESET: dict[str, Any] = {
    "learning_rate": 1e-4,
    "max_steps": 20,
    "max_length": 256,
    "warmup_steps": 2,
    "global_batch_size": 4,
    "per_device_batch_size": 2,
    "save_steps": 5,
    "gradient_checkpointing": False,
}


class RunError(ValueError):
    """A run that cannot be created or started; `errors` lists every problem, for people."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


def _heartbeat_cutoff():
    stale = getattr(settings, "TRAINING_HEARTBEAT_STALE_S", HEARTBEAT_STALE_S)
    return timezone.now() - timedelta(seconds=stale)


def _heartbeat_stale(run: TrainingRun) -> bool:
    return run.heartbeat_at is None or run.heartbeat_at < _heartbeat_cutoff()


# --- Training runs: creating and checking ---------------------------------------------------------------


def train_config(run: TrainingRun, dataset_paths: list[str] | None = None) -> TrainConfig:
    """The TrainConfig of a run (its data files in its folder unless given)."""
    lora = {name: getattr(run, name) for name in _LORA_FIELDS}
    if lora["lora_alpha"] is not None and float(lora["lora_alpha"]).is_integer():
        lora["lora_alpha"] = int(lora["lora_alpha"])
    return TrainConfig(
        dataset_paths=dataset_paths if dataset_paths is not None else [str(data_file(run))],
        output_dir=str(run.folder),
        base_model=run.base_model,
        method=run.method,
        learning_rate=run.learning_rate,
        num_epochs=run.num_epochs,
        max_steps=run.max_steps,
        max_length=run.max_length,
        warmup_steps=run.warmup_steps,
        lr_scheduler=run.lr_scheduler,
        global_batch_size=run.global_batch_size,
        per_device_batch_size=run.per_device_batch_size,
        num_processes=run.num_processes,
        bf16={"auto": None, "on": True, "off": False}[run.bf16],
        packing=run.packing,
        gradient_checkpointing=run.gradient_checkpointing,
        seed=run.seed,
        save_steps=run.save_steps,
        **lora,
    )


def data_file(run: TrainingRun) -> Path:
    return run.folder / DATA_DIR / exports.FORMATS["alpaca"].filename


def check_training_run(run: TrainingRun) -> list[str]:
    """Every problem with an unsaved run that the web server can see: the dataset version, and the
    configuration without the hardware (the worker checks bf16 and GPUs again before it trains)."""
    errors = []
    version = run.dataset_version
    if version.status != DatasetVersion.Status.SUCCEEDED:
        errors.append(f"dataset {version.label} is not built ({version.get_status_display().lower()})")
    elif version.item_count == 0:
        errors.append(f"dataset {version.label} is empty: it has no instances to train on")
    if run.strategy == TrainingRun.Strategy.SINGLE and run.num_processes > 1:
        errors.append("several processes need a strategy: DDP or FSDP")
    config = train_config(run, dataset_paths=[])
    config.output_dir = "(set when queued)"
    errors += config.validate(None, check_data=False)
    return errors


def create_training_run(*, dataset_version: DatasetVersion, user=None, **params: Any) -> TrainingRun:
    """Check and save a run (not queued); raises RunError listing every problem. `params` are model
    fields: base_model, method and the HYPERPARAMETERS (defaults: WaveCoder's recipe)."""
    unknown = set(params) - {"base_model", "method", *HYPERPARAMETERS}
    if unknown:
        raise RunError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    run = TrainingRun(dataset_version=dataset_version, created_by=user, **params)
    if not run.base_model:
        run.base_model = finetune.TrainConfig.base_model
    errors = check_training_run(run)
    if errors:
        raise RunError(errors)
    run.save()
    run.output_dir = str(settings.ARTIFACTS_DIR / "runs" / str(run.pk))
    run.save(update_fields=["output_dir"])
    return run


def queue_training(run: TrainingRun) -> None:
    from training import tasks

    transaction.on_commit(lambda: tasks.run_training.delay(run.pk))


def start_training(**params: Any) -> TrainingRun:
    """Create a run and queue it on the `gpu` queue; raises RunError."""
    run = create_training_run(**params)
    queue_training(run)
    return run


def request_cancel(run: TrainingRun) -> str:
    """Ask a run to stop: a queued run is cancelled at once, a running one at the end of its step (the
    worker sees the flag, with a checkpoint to resume from). Returns what happened, for people."""
    if not run.is_active:
        return f"Run #{run.pk} is not running."
    updated = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    )
    if updated:
        run.refresh_from_db()
        return f"Run #{run.pk} cancelled before it started."
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    if run.output_dir:
        finetune.request_cancel(run.folder)  # the training process also reads this, in case no worker does
    return f"Run #{run.pk} stops after its current step, with a checkpoint."


def can_resume(run: TrainingRun) -> bool:
    """A failed or cancelled run, or one still marked running whose worker stopped writing."""
    if run.status in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        return True
    return run.status == TrainingRun.Status.RUNNING and _heartbeat_stale(run)


def resume_training(run: TrainingRun) -> str:
    """Queue a failed, cancelled or orphaned run again; it continues from its newest checkpoint."""
    if not can_resume(run):
        raise RunError(f"run #{run.pk} is {run.get_status_display().lower()}: nothing to resume")
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.QUEUED,
        cancel_requested=False,
        heartbeat_at=None,
        finished_at=None,
        error="",
        error_kind="",
    )
    run.refresh_from_db()
    queue_training(run)
    checkpoint = finetune.last_checkpoint(run.folder)
    where = f"from {checkpoint.name}" if checkpoint else "from the start (no checkpoint was saved)"
    return f"Run #{run.pk} queued again; it resumes {where}."


# --- Training runs: the worker's side -------------------------------------------------------------------


def _orphaned(run: TrainingRun) -> bool:
    """A running run that no live worker follows: its heartbeat is stale, or its worker is known dead."""
    return run.status == TrainingRun.Status.RUNNING and (_heartbeat_stale(run) or run.holder_gone)


def requeue_orphaned_runs() -> list[int]:
    """Queue again every run whose worker died (a `gpu` worker calls this when it starts): each resumes from
    its newest checkpoint; and every evaluation whose worker on this machine died (it starts over). A
    duplicate message is harmless: only one worker claims a run or an evaluation."""
    orphans = [run for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING) if _orphaned(run)]
    for run in orphans:
        logger.warning("run %s: its worker is gone; queued again to resume", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(phase="queued again: its worker was lost")
        queue_training(run)
    here = EvaluationRun.objects.filter(status=EvaluationRun.Status.RUNNING, worker_host=socket.gethostname())
    for evaluation in [e for e in here if e.holder_gone]:
        logger.warning("evaluation %s: its worker is gone; queued again", evaluation.pk)
        EvaluationRun.objects.filter(pk=evaluation.pk).update(phase="queued again: its worker was lost")
        queue_evaluation(evaluation)
    return [run.pk for run in orphans]


def _claim(run: TrainingRun) -> bool:
    """Take a queued run, or a running one whose worker is gone (stale heartbeat, or a dead process on this
    machine); one worker wins."""
    now = timezone.now()
    claimable = Q(status=TrainingRun.Status.QUEUED) | Q(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_heartbeat_cutoff()),
        status=TrainingRun.Status.RUNNING,
    )
    if run.holder_gone:  # compare-and-set on what was seen: a live worker's newer heartbeat wins
        seen = {"worker_pid": run.worker_pid, "heartbeat_at": run.heartbeat_at}
        claimable |= Q(status=TrainingRun.Status.RUNNING, **seen)
    claimed = (
        TrainingRun.objects.filter(claimable, pk=run.pk)
        .exclude(cancel_requested=True)
        .update(
            status=TrainingRun.Status.RUNNING,
            started_at=run.started_at or now,
            heartbeat_at=now,
            worker_host=socket.gethostname(),
            worker_pid=os.getpid(),
            error="",
            error_kind="",
        )
    )
    run.refresh_from_db()
    return bool(claimed)


def _end(run: TrainingRun, status: str, error: str = "", kind: str = "", **fields: Any) -> TrainingRun:
    fields |= {"status": status, "error": error, "error_kind": kind, "finished_at": timezone.now()}
    fields["heartbeat_at"] = None
    TrainingRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def _stop_orphan(run: TrainingRun) -> None:
    """A training process left by a dead worker on this machine is asked to stop (it saves a checkpoint),
    so two processes never train in the same folder."""
    pid = run.process_pid
    if not pid or run.worker_host != socket.gethostname() or not process_alive(pid):
        return
    logger.warning("run %s: stopping the training process %s left by a previous worker", run.pk, pid)
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_alive(pid):
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the process was started in its own session: its group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:
    """In the child before exec: a SIGTERM when the worker dies (Linux), which ends the training at the
    end of its step with a checkpoint, instead of an orphan that trains on."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the next worker stops the orphan (_stop_orphan)
        pass


def _spawn(command: list[str], **streams: Any) -> subprocess.Popen:
    """Start a training or evaluation subprocess in the project root, offline, in its own session (a signal
    reaches all its processes) and, on Linux, ended with the worker (`_die_with_parent`)."""
    return subprocess.Popen(
        command,
        cwd=finetune.PROJECT_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        **streams,
    )


def _prepare_data(run: TrainingRun) -> Path:
    """The version's Alpaca JSON in the run's folder (exported once; a resumed run reuses it)."""
    path = data_file(run)
    if not path.exists():
        exports.export_version(run.dataset_version, path.parent, formats=("alpaca",))
    return path


def run_training(
    run_id: int, *, on_progress: Callable[[dict[str, Any]], None] | None = None, poll_s: float = POLL_S
) -> TrainingRun | None:
    """Train one run in a subprocess, following it into the row until it ends; see the module docstring.

    `on_progress(step_event)` gets each new step (the `train` command draws its bar with it). A run that
    another live worker holds, or one already finished, is left alone (None is returned).
    """
    try:
        run = TrainingRun.objects.select_related("dataset_version").get(pk=run_id)
    except TrainingRun.DoesNotExist:
        return None
    _stop_orphan(run)
    if not _claim(run):
        return None
    folder = run.folder
    checkpoint = finetune.last_checkpoint(folder)
    if checkpoint is not None:  # a worker died, or Resume was clicked: the process continues from here
        run.resumed_count += 1
        run.resumed_from_step = int(checkpoint.name.rpartition("-")[2])
        TrainingRun.objects.filter(pk=run.pk).update(
            resumed_count=run.resumed_count, resumed_from_step=run.resumed_from_step
        )
    try:
        run.set_phase("exporting the dataset")
        folder.mkdir(parents=True, exist_ok=True)
        _prepare_data(run)
        config = train_config(run)
        errors = config.validate(finetune.Hardware.detect())  # this machine's GPUs, bf16, the data
        if errors:
            return _end(run, TrainingRun.Status.FAILED, "; ".join(errors), "invalid_config")
        config_path = config.save(folder / finetune.CONFIG_FILE)
        (folder / finetune.RESULT_FILE).unlink(missing_ok=True)  # a stale result must not be read as ours
        (folder / finetune.CANCEL_FILE).unlink(missing_ok=True)
        strategy = run.strategy if run.strategy != TrainingRun.Strategy.SINGLE else "fsdp"
        command = finetune.launch_command(config, config_path, strategy=strategy)
    except Exception as exc:  # the export or the files: nothing was trained
        logger.exception("run %s could not start", run.pk)
        return _end(run, TrainingRun.Status.FAILED, f"could not start: {exc}", "failed")
    run.set_phase("starting" if checkpoint is None else f"resuming from {checkpoint.name}")
    with open(folder / PROCESS_LOG, "ab") as log:
        process = _spawn(command, stdout=log, stderr=subprocess.STDOUT)  # a cancel signals every rank
    TrainingRun.objects.filter(pk=run.pk).update(process_pid=process.pid)
    watch = _Watch(run, process, on_progress)
    while process.poll() is None:
        time.sleep(poll_s)
        watch.tick()
    watch.tick()
    # The page also writes the cancel file itself, so the process may stop before the watch saw the flag.
    cancelled = (
        watch.cancel_sent is not None or TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()
    )
    return _finish_training(run, process.returncode, cancelled=cancelled)


class _Watch:
    """Copies new steps into the row, beats the heartbeat, and carries a cancel request to the process."""

    def __init__(self, run: TrainingRun, process: subprocess.Popen, on_progress) -> None:
        self.run, self.process, self.on_progress = run, process, on_progress
        self.last_seen: tuple[int, str | None] | None = None
        self.cancel_sent: float | None = None
        self.term_sent: float | None = None

    def tick(self) -> None:
        run = self.run
        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
        events = finetune.read_metrics(run.folder, tail=50)
        steps = [e for e in events if e.get("event") == "step"]
        start = next((e for e in reversed(events) if e.get("event") == "start"), None)
        if start and run.phase != "training":
            run.phase = fields["phase"] = "training"
            fields["total_steps"] = fields["progress_total"] = start.get("max_steps") or 0
        if steps and (steps[-1]["step"], steps[-1].get("time")) != self.last_seen:
            step = steps[-1]
            self.last_seen = (step["step"], step.get("time"))
            fields |= {
                "last_step": step["step"],
                "total_steps": step.get("max_steps") or 0,
                "progress_done": step["step"],
                "progress_total": step.get("max_steps") or 0,
                "last_epoch": step.get("epoch"),
                "last_loss": step.get("loss"),
                "last_lr": step.get("learning_rate"),
                "tokens_per_s": step.get("tokens_per_s"),
                "eta_s": step.get("eta_s"),
            }
            if run.first_loss is None:
                first = next((e for e in finetune.read_metrics(run.folder) if e.get("event") == "step"), None)
                run.first_loss = fields["first_loss"] = first and first.get("loss")
            if self.on_progress:
                self.on_progress(step)
        TrainingRun.objects.filter(pk=run.pk).update(**fields)
        for name, value in fields.items():
            setattr(run, name, value)
        self._carry_cancel()

    def _carry_cancel(self) -> None:
        if self.process.poll() is not None:
            return
        now = time.monotonic()
        if self.cancel_sent is None:
            if TrainingRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
                finetune.request_cancel(self.run.folder)
                self.cancel_sent = now
                TrainingRun.objects.filter(pk=self.run.pk).update(phase="stopping at the end of the step")
            return
        grace = getattr(settings, "TRAINING_CANCEL_GRACE_S", CANCEL_GRACE_S)
        if self.term_sent is None and now - self.cancel_sent > grace:
            _signal_group(self.process.pid, signal.SIGTERM)
            self.term_sent = now
        elif self.term_sent is not None and now - self.term_sent > TERM_GRACE_S:
            _signal_group(self.process.pid, signal.SIGKILL)


def _finish_training(run: TrainingRun, returncode: int | None, *, cancelled: bool) -> TrainingRun:
    result = finetune.read_result(run.folder) or {}
    fields: dict[str, Any] = {"result": result, "process_pid": None, "eta_s": None}
    status = result.get("status")
    if status == finetune.COMPLETED:
        fields["final_model_path"] = result.get("model_dir") or ""
        fields["last_step"] = fields["progress_done"] = result.get("global_step") or run.last_step
        if result.get("final_loss") is not None:
            fields["last_loss"] = result["final_loss"]
        return _end(run, TrainingRun.Status.SUCCEEDED, phase="done", **fields)
    checkpoint = finetune.last_checkpoint(run.folder)
    saved = f"; {checkpoint.name} is saved, Resume continues from it" if checkpoint else ""
    if cancelled:
        return _end(run, TrainingRun.Status.CANCELLED, f"cancelled{saved}", phase="cancelled", **fields)
    if status == finetune.FAILED:
        return _end(
            run,
            TrainingRun.Status.FAILED,
            result.get("message", "failed"),
            result.get("kind", "failed"),
            **fields,
        )
    if status == finetune.STOPPED:  # a SIGTERM that was not ours: the worker's machine shutting down
        return _end(run, TrainingRun.Status.FAILED, f"interrupted{saved}", "interrupted", **fields)
    meaning = finetune.describe_exit(returncode)
    kind = "out_of_memory" if finetune.killed(returncode) else "crashed"
    tail = _tail(run.folder / PROCESS_LOG, 8)
    message = f"the training process {meaning}{saved}" + (f"\n{tail}" if tail else "")
    return _end(run, TrainingRun.Status.FAILED, message, kind, **fields)


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 64 * 1024))
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_tail(run: TrainingRun, lines: int = 40) -> str:
    """The end of train.log (or, before it exists or after a crash, of the process's own output)."""
    text = _tail(run.folder / finetune.LOG_FILE, lines)
    crash = _tail(run.folder / PROCESS_LOG, lines) if run.status == TrainingRun.Status.FAILED else ""
    return "\n".join(part for part in (text, crash) if part)


def loss_points(run: TrainingRun) -> list[tuple[int, float]]:
    return finetune.loss_points(run.folder) if run.output_dir else []


# --- Evaluation runs ------------------------------------------------------------------------------------


def _check_evaluation(model: str, limit: int | None, n: int) -> list[str]:
    errors = []
    if not model:
        errors.append("choose a model")
    elif model not in finetune.REGISTERED_MODELS and (problem := finetune._model_path_problem(model)):
        errors.append(problem)
    if limit is not None and limit < 1:
        errors.append("the number of problems must be at least 1")
    if n < 1:
        errors.append("n must be at least 1")
    return errors


def create_evaluation(
    *,
    model: str,
    label: str = "",
    limit: int | None = None,
    task_ids: list[str] | None = None,
    n: int = 1,
    max_new_tokens: int = 512,
    prompt_style: str = "completion",
    training_run: TrainingRun | None = None,
    role: str = "",
    user=None,
) -> EvaluationRun:
    """Check and save an evaluation of one model (not queued); raises RunError."""
    errors = _check_evaluation(model, limit, n)
    if errors:
        raise RunError(errors)
    return EvaluationRun.objects.create(
        model=model,
        label=label,
        limit=limit,
        task_ids=list(task_ids or []),
        n=n,
        max_new_tokens=max_new_tokens,
        prompt_style=prompt_style,
        training_run=training_run,
        role=role,
        created_by=user,
    )


def queue_evaluation(evaluation: EvaluationRun) -> None:
    from training import tasks

    transaction.on_commit(lambda: tasks.run_evaluation.delay(evaluation.pk))


def start_evaluation(**params: Any) -> EvaluationRun:
    evaluation = create_evaluation(**params)
    queue_evaluation(evaluation)
    return evaluation


def create_comparison(run: TrainingRun, *, user=None, **params: Any) -> tuple[EvaluationRun, EvaluationRun]:
    """Two evaluations with the same settings, of a finished run's base model and of its tuned model; the
    tuned one points at the base one (`compare_with`). Not queued; raises RunError."""
    if run.status != TrainingRun.Status.SUCCEEDED or not run.final_model_path:
        raise RunError(f"run #{run.pk} has no final model yet ({run.get_status_display().lower()})")
    with transaction.atomic():  # both or neither
        return _create_pair(run, user=user, **params)


def _create_pair(run: TrainingRun, *, user, **params: Any) -> tuple[EvaluationRun, EvaluationRun]:
    base = create_evaluation(
        model=run.base_model,
        label=f"base of run #{run.pk}",
        training_run=run,
        role="base",
        user=user,
        **params,
    )
    tuned = create_evaluation(
        model=run.final_model_path,
        label=f"run #{run.pk} (tuned)",
        training_run=run,
        role="tuned",
        user=user,
        **params,
    )
    tuned.compare_with = base
    tuned.save(update_fields=["compare_with"])
    return base, tuned


def start_comparison(run: TrainingRun, **params: Any) -> tuple[EvaluationRun, EvaluationRun]:
    base, tuned = create_comparison(run, **params)
    queue_evaluation(base)
    queue_evaluation(tuned)
    return base, tuned


EVALUATION_RESULTS = "results.json"
EVALUATION_LOG = "evaluation.log"


def evaluation_folder(evaluation: EvaluationRun) -> Path:
    """Where an evaluation's subprocess writes its results, samples and log."""
    return Path(settings.ARTIFACTS_DIR) / "evaluations" / str(evaluation.pk)


def evaluation_command(evaluation: EvaluationRun, folder: Path) -> list[str]:
    """`python -m training.model_eval …` for one evaluation (run with cwd=PROJECT_ROOT)."""
    command = [sys.executable, "-m", "training.model_eval", f"--model={evaluation.model}"]
    command += ["--n", str(evaluation.n), "--max-new-tokens", str(evaluation.max_new_tokens)]
    command += ["--prompt-style", evaluation.prompt_style]
    if evaluation.limit:
        command += ["--limit", str(evaluation.limit)]
    if evaluation.task_ids:
        command += ["--task-ids", *evaluation.task_ids]
    return command + [
        "--out",
        str(folder / EVALUATION_RESULTS),
        "--samples-out",
        str(folder / "samples.jsonl"),
    ]


def run_evaluation(
    evaluation_id: int, *, on_progress: Callable[[str, int, int], None] | None = None
) -> EvaluationRun | None:
    """Generate and score one evaluation in a subprocess (the code runs only in the sandbox), its progress
    into the row. The model lives in that process, so an out-of-memory kill ends the evaluation with a
    message and leaves the worker (and its redelivered message) alone."""
    try:
        evaluation = EvaluationRun.objects.get(pk=evaluation_id)
    except EvaluationRun.DoesNotExist:
        return None
    if not evaluation.claim(only_from_dead_holder=True):
        return None
    reporter = ProgressReporter(evaluation, on_progress)
    folder = evaluation_folder(evaluation)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EVALUATION_RESULTS).unlink(missing_ok=True)
        log = open(folder / EVALUATION_LOG, "ab")
    except OSError as exc:
        evaluation.finish(EvaluationRun.Status.FAILED, f"could not start: {exc}")
        return evaluation
    with log:
        process = _spawn(
            evaluation_command(evaluation, folder), stdout=subprocess.PIPE, stderr=log, text=True
        )
        for line in process.stdout:  # one JSON object per progress report: phase, done, total
            try:
                event = json.loads(line)
                phase, done, total = event["phase"], int(event["done"]), int(event["total"])
            except (ValueError, KeyError, TypeError):
                continue
            if phase != evaluation.phase:
                reporter.start(phase, total)
            reporter.update(done)
        returncode = process.wait()
    try:
        data = json.loads((folder / EVALUATION_RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if returncode != 0 or data is None:
        evaluation.finish(EvaluationRun.Status.FAILED, _evaluation_failure(folder, returncode))
        return evaluation
    evaluation.pass_at_1 = data["pass_at_k"].get("pass@1", 0.0)
    evaluation.pass_at_k = data["pass_at_k"]
    evaluation.results = data
    evaluation.save(update_fields=["pass_at_1", "pass_at_k", "results"])
    evaluation.finish()
    return evaluation


def _evaluation_failure(folder: Path, returncode: int) -> str:
    """The subprocess's own error line ("error: …"), else what its exit status means and its last lines."""
    tail = _tail(folder / EVALUATION_LOG, 8)
    errors = [line for line in tail.splitlines() if line.startswith("error: ")]
    if errors:
        return errors[-1].removeprefix("error: ")
    if finetune.killed(returncode):
        return (
            "the evaluation process was killed (SIGKILL): most often out of memory; lower the batch size or "
            "max new tokens, or evaluate on a machine with more memory" + (f"\n{tail}" if tail else "")
        )
    if returncode == 0:
        meaning = "finished without writing its results"
    elif returncode < 0:
        meaning = finetune.describe_exit(returncode)
    else:
        meaning = f"exited with status {returncode}"
    return f"the evaluation process {meaning}" + (f"\n{tail}" if tail else "")


def model_evaluation(evaluation: EvaluationRun):
    """The stored results as a `model_eval.ModelEvaluation` (for side_by_side)."""
    from training import model_eval

    data = evaluation.results or {}
    problems = [
        model_eval.ProblemResult(
            task_id=p["task_id"], completions=p["completions"], outcomes=p["outcomes"], details=p["details"]
        )
        for p in data.get("problems", [])
    ]
    pass_at_k = {int(key.partition("@")[2]): value for key, value in (data.get("pass_at_k") or {}).items()}
    return model_eval.ModelEvaluation(
        model=evaluation.name,
        settings=data.get("settings", {}),
        problems=problems,
        pass_at_k=pass_at_k,
        generation_s=data.get("generation_s", 0.0),
        scoring_s=data.get("scoring_s", 0.0),
    )


def comparison(tuned: EvaluationRun) -> dict[str, Any] | None:
    """Base against tuned per problem (side_by_side), once both evaluations succeeded; else None."""
    from training import model_eval

    base = tuned.compare_with
    done = EvaluationRun.Status.SUCCEEDED
    if base is None or base.status != done or tuned.status != done:
        return None
    return model_eval.side_by_side(model_evaluation(base), model_evaluation(tuned))
