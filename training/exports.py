"""Export files of a dataset version, written in one streaming pass over its rows.

- `alpaca.json`: a JSON array of {instruction, input, output}: WaveCoder's and Alpaca's training scripts
  read it with `json.load`.
- `messages.jsonl`: {"messages": [user, assistant]} per line, the conversational format of TRL's
  SFTTrainer, LLaMA-Factory and axolotl.
- `data.parquet` (zstd): the three fields plus task, language and instance id, for pyarrow, pandas and
  `datasets.load_dataset("parquet")`.
- `hf_dataset/` (`Dataset.save_to_disk`), zipped for download: `datasets.load_from_disk`.
- `README.md`: a Hugging Face dataset card with the counts and the build's report.

Rows are read from the database with a server-side cursor (`.iterator()`), handed to every writer in
batches and written at once, so memory stays flat whatever the size (see bench/export_bench.py). JSON is
written with the standard library's encoder; each text writer hashes what it writes (sha256), so a
version's `content_hash` names its exact data.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from django.http import FileResponse

    from training.models import DatasetVersion

# instruction, input, output, task, language, instance id: what every writer receives, in this order.
Row = tuple[str, str, str, str, str, int | None]
ROW_FIELDS = ("instruction", "input", "output", "task", "language", "instance_id")
ROW_CHUNK = 5000  # rows fetched from the database per round trip, and handed to the writers at once
PARQUET_SCHEMA = pa.schema(
    [
        ("instruction", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("task", pa.string()),
        ("language", pa.string()),
        ("instance_id", pa.int64()),
    ]
)
HF_FOLDER = "hf_dataset"
# The standard library's C string encoder, as json.dumps(..., ensure_ascii=False) uses it: the objects
# around the strings are fixed, so they are written as text rather than built as dicts and encoded.
_STR = json.encoder.encode_basestring


@dataclass(frozen=True)
class ExportFormat:
    key: str
    label: str
    filename: str
    content_type: str
    read_with: str


FORMATS: dict[str, ExportFormat] = {
    f.key: f
    for f in (
        ExportFormat(
            "alpaca", "Alpaca JSON", "alpaca.json", "application/json", "json.load (WaveCoder, Alpaca)"
        ),
        ExportFormat(
            "messages",
            "Chat messages JSONL",
            "messages.jsonl",
            "application/jsonl",
            "TRL SFTTrainer, LLaMA-Factory, axolotl",
        ),
        ExportFormat(
            "parquet",
            "Parquet",
            "data.parquet",
            "application/vnd.apache.parquet",
            "pyarrow, pandas, datasets",
        ),
        ExportFormat(
            "hf",
            "Hugging Face datasets (zip)",
            f"{HF_FOLDER}.zip",
            "application/zip",
            "datasets.load_from_disk",
        ),
        ExportFormat("card", "Dataset card", "README.md", "text/markdown; charset=utf-8", "people, the Hub"),
    )
}
ROW_FORMATS = ("alpaca", "messages", "parquet", "hf")


@dataclass(frozen=True)
class ExportFile:
    """A file written: its name in the version folder, size, rows and sha256 (of text files)."""

    name: str
    bytes: int
    rows: int
    sha256: str = ""


def user_message(instruction: str, input_: str) -> str:
    """The user's turn of a chat-format instance: the instruction, then the input when there is one."""
    return f"{instruction}\n\n{input_}" if input_.strip() else instruction


# --- Writers: each takes batches of rows and writes them at once -------------------------------------------


class _TextWriter:
    """A UTF-8 file that hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = open(path, "wb")
        self.sha = hashlib.sha256()
        self.rows = 0

    def _put(self, text: str) -> None:
        data = text.encode("utf-8", "replace")  # a lone surrogate (from a JSON escape) becomes "?"
        self.sha.update(data)
        self.file.write(data)

    def close(self) -> ExportFile:
        self.file.close()
        return ExportFile(self.path.name, self.path.stat().st_size, self.rows, self.sha.hexdigest())


class AlpacaWriter(_TextWriter):
    """A JSON array, one {instruction, input, output} object per line: `json.load` reads it whole."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._put("[")

    def write(self, rows: Sequence[Row]) -> None:
        if rows:
            objects = (
                f'{{"instruction":{_STR(r[0])},"input":{_STR(r[1])},"output":{_STR(r[2])}}}' for r in rows
            )
            self._put(("\n" if not self.rows else ",\n") + ",\n".join(objects))
            self.rows += len(rows)

    def close(self) -> ExportFile:
        self._put("\n]\n")
        return super().close()


class MessagesWriter(_TextWriter):
    """JSON Lines of {"messages": [{"role": "user", …}, {"role": "assistant", …}]}: the conversational
    format TRL's SFTTrainer applies the model's chat template to."""

    def write(self, rows: Sequence[Row]) -> None:
        if rows:
            lines = (
                f'{{"messages":[{{"role":"user","content":{_STR(user_message(r[0], r[1]))}}},'
                f'{{"role":"assistant","content":{_STR(r[2])}}}]}}'
                for r in rows
            )
            self._put("\n".join(lines) + "\n")
            self.rows += len(rows)


class ParquetWriter:
    """Parquet through pyarrow, a row group per batch; optionally the same batches as an Arrow stream,
    which `datasets.Dataset.from_file` memory-maps for the Hugging Face folder."""

    def __init__(self, path: Path, arrow_path: Path | None = None) -> None:
        self.path, self.arrow_path = path, arrow_path
        self.writer = pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd")
        self.stream = pa.ipc.new_stream(str(arrow_path), PARQUET_SCHEMA) if arrow_path else None
        self.rows = 0

    def write(self, rows: Sequence[Row]) -> None:
        if rows:
            columns = [
                pa.array(column, type=f.type)
                for column, f in zip(zip(*rows, strict=True), PARQUET_SCHEMA, strict=True)
            ]
            batch = pa.record_batch(columns, schema=PARQUET_SCHEMA)
            self.writer.write_batch(batch)
            if self.stream is not None:
                self.stream.write_batch(batch)
            self.rows += len(rows)

    def close(self) -> ExportFile:
        if self.rows == 0:  # a file with a schema and no row group still reads as an empty table
            self.writer.write_table(PARQUET_SCHEMA.empty_table())
        self.writer.close()
        if self.stream is not None:
            self.stream.close()
        return ExportFile(self.path.name, self.path.stat().st_size, self.rows)


def write_rows(
    rows: Iterable[Row], writers: Sequence[Any], *, on_progress: Callable[[int], None] | None = None
) -> int:
    """Feed the rows to every writer in batches of ROW_CHUNK; returns how many rows there were."""
    total = 0
    rows = iter(rows)
    while batch := list(islice(rows, ROW_CHUNK)):
        for writer in writers:
            writer.write(batch)
        total += len(batch)
        if on_progress:
            on_progress(len(batch))
    return total


def version_rows(version: DatasetVersion, chunk_size: int = ROW_CHUNK) -> Iterator[Row]:
    """A version's rows in order, streamed (a server-side cursor on PostgreSQL)."""
    return version.items.order_by("position").values_list(*ROW_FIELDS).iterator(chunk_size=chunk_size)


def save_hf_dataset(arrow_path: Path, folder: Path) -> None:
    """A `datasets` folder (`save_to_disk`) from an Arrow stream file, without loading it in memory."""
    import datasets

    datasets.disable_progress_bars()  # a bar per save fills worker logs; progress is the version's own
    datasets.Dataset.from_file(str(arrow_path)).save_to_disk(str(folder))


class _Sink(io.RawIOBase):
    """A write-only stream that keeps what is written until it is taken: `zipfile` writes into it and a
    generator hands the bytes on, so a zip is streamed without being built in memory or on disk."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream_zip(members: Iterable[tuple[Path, str]]) -> Iterator[bytes]:
    """The bytes of a zip of (file, name in the archive) pairs, a block at a time."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path, name in members:
            with open(path, "rb") as source, archive.open(name, "w", force_zip64=True) as target:
                for block in iter(lambda source=source: source.read(1 << 20), b""):
                    target.write(block)
                    yield sink.take()
    yield sink.take()


def folder_members(folder: Path, prefix: str) -> list[tuple[Path, str]]:
    """Every file under `folder`, named `prefix/<relative path>` in an archive."""
    return [
        (path, f"{prefix}/{path.relative_to(folder).as_posix()}")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


def zip_folder(folder: Path, target: Path) -> None:
    """Zip a folder; its files sit under the folder's own name inside the archive."""
    with open(target, "wb") as out:
        for block in stream_zip(folder_members(folder, folder.name)):
            out.write(block)


# --- A whole version ---------------------------------------------------------------------------------------


def export_version(
    version: DatasetVersion,
    folder: Path | None = None,
    *,
    formats: Sequence[str] = tuple(FORMATS),
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, ExportFile]:
    """Write the chosen formats of a version into `folder` (default: the version's own folder), reading
    its rows once. Files appear together: they are written to a `.partial` folder that is then renamed,
    so a crash never leaves a half-written export behind."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"Unknown export format {', '.join(unknown)}; formats: {', '.join(FORMATS)}.")
    target = Path(folder) if folder is not None else version.folder
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    arrow_path = partial / "rows.arrow"
    writers: dict[str, Any] = {}
    if "alpaca" in formats:
        writers["alpaca"] = AlpacaWriter(partial / FORMATS["alpaca"].filename)
    if "messages" in formats or "card" in formats:  # the card names the data by this file's hash
        writers["messages"] = MessagesWriter(partial / FORMATS["messages"].filename)
    if "parquet" in formats or "hf" in formats:
        writers["parquet"] = ParquetWriter(
            partial / FORMATS["parquet"].filename, arrow_path if "hf" in formats else None
        )
    try:
        write_rows(version_rows(version), list(writers.values()), on_progress=on_progress)
    finally:
        files = {key: writer.close() for key, writer in writers.items()}
    if "hf" in formats:
        save_hf_dataset(arrow_path, partial / HF_FOLDER)
        arrow_path.unlink()
        zip_folder(partial / HF_FOLDER, partial / FORMATS["hf"].filename)
        files["hf"] = ExportFile(
            FORMATS["hf"].filename, (partial / FORMATS["hf"].filename).stat().st_size, files["parquet"].rows
        )
    if "card" in formats:
        text = dataset_card(version, content_hash=files["messages"].sha256)
        (partial / FORMATS["card"].filename).write_text(text, encoding="utf-8")
        files["card"] = ExportFile(
            FORMATS["card"].filename, len(text.encode()), 0, hashlib.sha256(text.encode()).hexdigest()
        )
    for key in set(files) - set(formats):  # written only because another format needed it
        (partial / files.pop(key).name).unlink()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return files


def export_path(version: DatasetVersion, key: str) -> Path:
    """Where a built version keeps the file of one format."""
    return version.folder / FORMATS[key].filename


def download_response(version: DatasetVersion, key: str) -> FileResponse:
    """One export file of a version (which must exist), streamed as an attachment named after the version."""
    from django.http import FileResponse

    spec = FORMATS[key]
    response = FileResponse(
        open(export_path(version, key), "rb"),
        as_attachment=True,
        filename=f"wavecoder-{version.label}-{spec.filename}",
    )
    response["Content-Type"] = spec.content_type
    return response


# --- The dataset card -------------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    """The Hub's size_categories bucket."""
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes and newlines would break the row."""
    return " ".join(str(value).replace("|", "\\|").split())


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def task_rows(version: DatasetVersion) -> list[dict]:
    """Per task: instances kept, their share, the mix's target share, what was available and dropped."""
    report = version.report or {}
    mix = report.get("mix", {})
    kept, target, available = report.get("by_task", {}), mix.get("target") or {}, mix.get("available", {})
    return [
        {
            "task": task,
            "kept": kept.get(task, 0),
            "share": kept.get(task, 0) / version.item_count if version.item_count else None,
            "target": target.get(task),
            "available": available.get(task, 0),
            "dropped": mix.get("dropped", {}).get(task, 0),
        }
        for task in sorted(set(kept) | set(target) | set(available))
    ]


def dataset_card(version: DatasetVersion, *, content_hash: str = "", flagged_rows: int = 50) -> str:
    """The README.md of a version: Hub metadata, then counts per task and language, the task mix, how the
    rows were made (models, principle versions, sources, filters), and what decontamination and
    near-dedup left out, with the strongest matches listed."""
    import yaml

    from training.models import DatasetExclusion

    report = version.report or {}
    count = version.item_count
    metadata = {
        "pretty_name": version.name or f"WaveCoder Studio dataset {version.label}",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["code", "instruction-tuning", "wavecoder"],
        "size_categories": [_size_category(count)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": FORMATS["parquet"].filename}],
            }
        ],
    }
    title = version.name or f"WaveCoder Studio dataset {version.label}"
    out = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "", f"# {title}", ""]
    if version.note:
        out += [version.note, ""]
    built = version.finished_at or version.started_at or version.created_at
    out += [
        f"Version **{version.label}** of a code instruction-tuning set made the WaveCoder way (raw code → "
        "Generator → Discriminator → people), built on "
        f"{built:%Y-%m-%d %H:%M} UTC: **{count:,} instances** kept of "
        f"{report.get('candidates', 0):,} accepted.",
        "",
    ]
    if content_hash:
        out += [f"Content hash (sha256 of `{FORMATS['messages'].filename}`): `{content_hash}`", ""]

    out += ["## Contents", "", "### Per task", ""]
    out.append(
        _table(
            ["task", "instances", "share", "target share", "accepted and clean", "left out by the mix"],
            (
                (
                    row["task"],
                    f"{row['kept']:,}",
                    _share(row["share"]),
                    _share(row["target"]),
                    f"{row['available']:,}",
                    f"{row['dropped']:,}",
                )
                for row in task_rows(version)
            ),
        )
    )
    out += ["", "### Per language", ""]
    out.append(
        _table(
            ["language", "instances"], ((lang, f"{n:,}") for lang, n in report.get("by_language", {}).items())
        )
    )

    models = report.get("models", {})
    out += ["", "## How it was made", ""]
    out.append(f"- Generator models: {_listing(models.get('generator'))}")
    out.append(f"- Discriminator models: {_listing(models.get('discriminator'))}")
    out.append(
        f"- Principle versions (the discriminator's checklists): {_listing(report.get('principle_versions'))}"
    )
    out.append(f"- Sources: {_listing(report.get('sources'))}")
    out.append(f"- Filters: {_filters(version)}")
    out.append(f"- Seed: {version.seed}")

    decon = report.get("decontamination", {})
    out += ["", "## Decontamination", ""]
    benchmarks = ", ".join(f"{b['name']} ({b['items']} items)" for b in decon.get("benchmarks", [])) or "none"
    out.append(f"Checked against: {benchmarks}. Methods:")
    out.append("")
    if "ngram" in decon:
        ngram = decon["ngram"]
        out.append(
            f"- **n-gram overlap**: normalized {ngram['n']}-grams over code tokens (as written and with "
            f"names renamed) and statement words; an instance is flagged when it holds at least "
            f"{_share(ngram['threshold'])} of a benchmark item's n-grams."
        )
        out.append(
            f"- **exact substring**: benchmark statements, their sentences and lines, solutions and function "
            f"bodies of at least {decon['substring']['min_chars']} characters, after normalizing whitespace "
            "and formatting."
        )
        embedding = decon.get("embedding")
        out.append(
            f"- **embedding nearest neighbour**: {embedding['model']}, cosine similarity ≥ "
            f"{embedding['threshold']}."
            if embedding
            else "- embedding nearest neighbour: off for this version."
        )
    out += [
        "",
        f"Left out: **{decon.get('instances', 0):,} instances** ({decon.get('matches', 0):,} matches); "
        f"by method: {_listing(decon.get('by_method'))}; "
        f"by benchmark: {_listing(decon.get('by_benchmark'))}.",
        "",
    ]
    flagged = version.exclusions.filter(reason=DatasetExclusion.Reason.CONTAMINATED).order_by("-score", "id")
    rows = list(
        flagged.values_list("instance_id", "benchmark", "benchmark_item", "method", "score")[:flagged_rows]
    )
    if rows:
        out.append(
            _table(["instance", "benchmark", "item", "method", "score"], ((f"#{r[0]}", *r[1:]) for r in rows))
        )
        total = decon.get("matches", 0)
        if total > len(rows):
            out += [
                "",
                f"… and {total - len(rows):,} more matches (the full list is on the version's page and in "
                "the API).",
            ]
        out.append("")

    dedup = report.get("dedup", {})
    out += [
        "## Near-duplicate removal",
        "",
        f"{dedup.get('method', 'MinHash-LSH')} over {dedup.get('shingle_size', 5)}-token shingles of the "
        f"whole instance, {dedup.get('num_perm', 256)} permutations, estimated Jaccard similarity ≥ "
        f"{dedup.get('threshold', 0.7)}: **{dedup.get('removed', 0):,} instances removed** (the earliest of "
        "each group stays).",
        "",
        "## Files",
        "",
        _table(
            ["file", "format", "read with"],
            ((f"`{f.filename}`", f.label, f.read_with) for f in FORMATS.values()),
        ),
        "",
        "```python",
        "import json",
        'rows = json.load(open("alpaca.json"))  # [{"instruction", "input", "output"}, …]',
        "",
        "from datasets import load_dataset, load_from_disk",
        'chat = load_dataset("json", data_files="messages.jsonl", split="train")  # TRL SFTTrainer reads it',
        'table = load_dataset("parquet", data_files="data.parquet", split="train")',
        'saved = load_from_disk("hf_dataset")',
        "```",
        "",
    ]
    return "\n".join(out)


def _listing(counts: dict | None) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{_cell(name)} ({n:,})" for name, n in counts.items())


def _filters(version: DatasetVersion) -> str:
    parts = []
    if version.tasks:
        parts.append("tasks " + ", ".join(version.tasks))
    if version.languages:
        parts.append("languages " + ", ".join(version.languages))
    if version.job_ids:
        parts.append("jobs " + ", ".join(f"#{j}" for j in version.job_ids))
    if version.reviewer_ids:
        from django.contrib.auth import get_user_model

        names = (
            get_user_model().objects.filter(pk__in=version.reviewer_ids).values_list("username", flat=True)
        )
        parts.append("accepted by " + ", ".join(sorted(names)))
    if version.accepted_from:
        parts.append(f"accepted from {version.accepted_from:%Y-%m-%d %H:%M}")
    if version.accepted_until:
        parts.append(f"accepted before {version.accepted_until:%Y-%m-%d %H:%M}")
    if version.max_size:
        parts.append(f"at most {version.max_size:,} instances")
    return "; ".join(parts) or "every accepted instance"
