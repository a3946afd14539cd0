"""Every export format loads back with the library that reads it, row for row."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pyarrow.parquet as pq
import pytest

from tests.training.dataset_factory import make_accepted, make_clean
from training import exports
from training.datasets import build_version, create_version
from training.exports import (
    FORMATS,
    AlpacaWriter,
    MessagesWriter,
    ParquetWriter,
    export_version,
    user_message,
    write_rows,
)
from training.models import DatasetVersion

# Text that breaks naive writers: quotes, backslashes, newlines, tabs, non-ASCII, an empty input.
AWKWARD = (
    'Explain "this" regex: \\d+\t(tabs) — and émojis 🐍.',
    "",
    'It matches digits.\nLine two with a "quote" and a backslash \\.',
)


@pytest.fixture
def version(db, reviewer) -> DatasetVersion:
    make_clean(reviewer)
    make_accepted(reviewer, task="summarization", instruction=AWKWARD[0], input=AWKWARD[1], output=AWKWARD[2])
    make_accepted(
        reviewer,
        task="repair",
        instruction="Fix the bug in this Python function.",
        input="def inc(x):\n    return x - 1",
        output="def inc(x):\n    return x + 1",
    )
    built = build_version(create_version(name="Exports", note="For the tests.", use_embeddings=False).pk)
    assert built.status == DatasetVersion.Status.SUCCEEDED, built.error
    return built


def expected(version: DatasetVersion) -> list[dict]:
    return list(version.items.order_by("position").values("instruction", "input", "output"))


def test_alpaca_json_loads_with_json_load_and_datasets(version, tmp_path):
    path = version.folder / "alpaca.json"
    with open(path, encoding="utf-8") as handle:
        rows = json.load(handle)  # what WaveCoder's and Alpaca's training scripts do
    assert rows == expected(version)
    assert {"instruction": AWKWARD[0], "input": "", "output": AWKWARD[2]} in rows

    from datasets import load_dataset

    loaded = load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path))
    assert loaded.column_names == ["instruction", "input", "output"] and loaded.to_list() == rows


def test_chat_messages_jsonl_is_conversational_for_trl(version, tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    path = version.folder / "messages.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == version.item_count
    loaded = load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path))
    assert loaded.column_names == ["messages"]
    for example, row in zip(loaded, expected(version), strict=True):
        assert is_conversational(example)  # TRL's SFTTrainer then applies the model's chat template
        assert example["messages"] == [
            {"role": "user", "content": user_message(row["instruction"], row["input"])},
            {"role": "assistant", "content": row["output"]},
        ]
    repair = next(json.loads(line) for line in lines if "Fix the bug" in line)
    assert repair["messages"][0]["content"] == (
        "Fix the bug in this Python function.\n\ndef inc(x):\n    return x - 1"
    )
    # The version's content hash is this file's sha256.
    assert version.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


def test_parquet_loads_with_pyarrow_and_datasets(version, tmp_path):
    path = version.folder / "data.parquet"
    table = pq.read_table(path)
    assert table.column_names == ["instruction", "input", "output", "task", "language", "instance_id"]
    rows = table.to_pylist()
    stored = list(version.items.order_by("position").values(*exports.ROW_FIELDS))
    assert rows == stored

    from datasets import load_dataset

    loaded = load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path))
    assert loaded.to_list() == rows


def test_hugging_face_folder_and_its_zip_load_with_load_from_disk(version, tmp_path):
    from datasets import load_from_disk

    stored = list(version.items.order_by("position").values(*exports.ROW_FIELDS))
    assert load_from_disk(str(version.folder / "hf_dataset")).to_list() == stored
    with zipfile.ZipFile(version.folder / "hf_dataset.zip") as archive:
        assert all(name.startswith("hf_dataset/") for name in archive.namelist())
        archive.extractall(tmp_path)
    reloaded = load_from_disk(str(tmp_path / "hf_dataset"))
    assert reloaded.to_list() == stored and reloaded.features["instance_id"].dtype == "int64"


def test_the_dataset_card_is_hub_metadata_with_counts_and_the_build_report(version, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(version.folder / "README.md")
    metadata = card.data.to_dict()
    assert metadata["pretty_name"] == "Exports"
    assert metadata["size_categories"] == ["n<1K"] and "code" in metadata["tags"]
    text = card.text
    assert "**8 instances** kept of 8 accepted" in text and "For the tests." in text
    assert "| generation | 6 | 75.0% | – | 6 | 0 |" in text
    assert "| summarization | 1 | 12.5% |" in text and "| python | 8 |" in text
    assert "Checked against: HumanEval (164 items)" in text
    assert "embedding nearest neighbour: off for this version" in text
    assert "Left out: **0 instances**" in text and "**0 instances removed**" in text
    assert f"`{version.content_hash}`" in text
    assert "Principle versions (the discriminator's checklists): generation v1 (6)" in text
    # The card's `configs` let `load_dataset` read the folder itself (as the Hub would).
    loaded = load_dataset(str(version.folder), split="train", cache_dir=str(tmp_path))
    assert loaded.num_rows == version.item_count


def test_the_card_lists_what_decontamination_left_out(db, reviewer):
    from tests.training.dataset_factory import humaneval_leaks

    make_clean(reviewer)
    for code in humaneval_leaks().values():
        make_accepted(reviewer, instruction="Write a Python function.", output=code)
    version = build_version(create_version(use_embeddings=False).pk)
    text = (version.folder / "README.md").read_text()
    assert "Left out: **3 instances**" in text and "by benchmark: HumanEval (3)" in text
    assert "| #" in text and "| HumanEval | HumanEval/0 | " in text and "| HumanEval/20 | ngram |" in text


def test_writers_stream_batches_and_empty_exports_are_valid(tmp_path):
    rows = [(f"instruction {i}", "", f"output {i}", "generation", "python", i) for i in range(12_345)]
    writers = [
        AlpacaWriter(tmp_path / "a.json"),
        MessagesWriter(tmp_path / "m.jsonl"),
        ParquetWriter(tmp_path / "p.parquet", tmp_path / "p.arrow"),
    ]
    batches: list[int] = []
    assert write_rows(iter(rows), writers, on_progress=batches.append) == 12_345
    assert batches == [5000, 5000, 2345]
    files = [writer.close() for writer in writers]
    assert [f.rows for f in files] == [12_345] * 3
    assert len(json.loads((tmp_path / "a.json").read_text())) == 12_345
    assert pq.read_table(tmp_path / "p.parquet").num_rows == 12_345
    assert files[1].sha256 == hashlib.sha256((tmp_path / "m.jsonl").read_bytes()).hexdigest()

    empty = [
        AlpacaWriter(tmp_path / "e.json"),
        MessagesWriter(tmp_path / "e.jsonl"),
        ParquetWriter(tmp_path / "e.pq"),
    ]
    assert write_rows([], empty) == 0
    for writer in empty:
        writer.close()
    assert json.loads((tmp_path / "e.json").read_text()) == []
    assert (tmp_path / "e.jsonl").read_text() == ""
    assert pq.read_table(tmp_path / "e.pq").num_rows == 0


def test_a_subset_of_formats_goes_to_any_folder(version, tmp_path):
    files = export_version(version, tmp_path / "out", formats=["alpaca", "card"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "alpaca.json"]
    assert set(files) == {"alpaca", "card"} and files["alpaca"].rows == version.item_count
    assert not (tmp_path / "out.partial").exists()
    # Exporting again gives the same bytes: the rows are frozen.
    assert (tmp_path / "out" / "alpaca.json").read_bytes() == (version.folder / "alpaca.json").read_bytes()
    with pytest.raises(ValueError, match="Unknown export format csv"):
        export_version(version, tmp_path / "bad", formats=["csv"])
    assert set(FORMATS) == {"alpaca", "messages", "parquet", "hf", "card"}


def test_a_lone_surrogate_is_replaced_not_fatal(tmp_path):
    writer = MessagesWriter(tmp_path / "m.jsonl")
    writer.write([("Odd \ud800 text", "", "fine", "generation", "python", 1)])
    writer.close()
    [line] = (tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["messages"][0]["content"] == "Odd ? text"
