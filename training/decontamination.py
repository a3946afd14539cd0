"""Benchmark decontamination: find training instances that leak benchmark problems or their solutions.

Three independent methods, each reported with its own score, because each catches what the others miss:

* **n-gram overlap** (Magicoder, StarCoder2-Instruct): code is tokenized (Python's `tokenize`, Pygments for
  other languages) with comments, whitespace, docstrings and quote style dropped and names lowercased.
  Three token streams are compared in 10-grams: the *code* as written, the code with every user-chosen
  name replaced by one placeholder (*renamed*: catches leaks whose functions and variables were renamed),
  and the *words* of the problem statement. The score is the fraction of a benchmark item's distinct
  n-grams that occur in the instance (containment, not Jaccard: an instance may add code around a leak).
  Benchmark n-grams sit in a hash index, so an instance costs one set intersection per stream, whatever
  the number of benchmark items.
* **exact substring**: the statement, each of its sentences and lines, the whole solution and each
  function body, when at least `substring_min_chars` long, found verbatim after whitespace (text) or
  formatting (code) is normalized. Candidates come from an anchor index, then `in` confirms them.
* **embedding nearest neighbour** (WaveCoder's own leakage study): cosine similarity between each embedded
  benchmark item (statement and solution) and each embedded instance (instruction, input and output),
  encoded in batches and compared with one matrix product per chunk. The only method that can see a
  reworded statement.

Everything here is pure and database-free; the dataset-version builder feeds it instances and leaves out
`flagged_keys(matches)`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import keyword
import re
import textwrap
import tokenize
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from training.benchmarks import BenchmarkItem

if TYPE_CHECKING:
    from curation.embeddings import Embedder

# --- Defaults, and why -----------------------------------------------------------------------------------
# Measured with the 164 HumanEval and 399 MBPP items against 4,671 functions from 81 standard-library
# modules (ordinary code, each with its docstring as the instruction) and planted leaks (verbatim, renamed,
# reformatted, both, without docstrings or type hints, paraphrased); tests/training/test_decontamination.py
# holds the figures and checks them.
DEFAULT_NGRAM = 10
# Leaks that keep the solution's structure score 0.8-1.0 (renamed and reformatted: at least 0.80); ordinary
# code reaches 0.10 (code), 0.30 (renamed) and 0 (statement words) against HumanEval.
DEFAULT_NGRAM_THRESHOLD = 0.5
# A stream is only scored for an item with at least this many distinct n-grams: a three-line solution
# such as `return len(string)` gives a handful of n-grams that ordinary code shares by chance. Renamed
# streams need more, since with every name a placeholder short idioms (`{t[i]: t[i + 1] for i in
# range(0, len(t), 2)}`) recur in ordinary code; items below the bar are left to the other streams.
DEFAULT_MIN_ITEM_NGRAMS = 8
DEFAULT_MIN_RENAMED_ITEM_NGRAMS = 20
DEFAULT_SUBSTRING_MIN_CHARS = 50
# all-MiniLM-L6-v2, instance vs item: ordinary code reaches 0.70 against HumanEval (0.80 against MBPP, a
# same-task pair: colorsys.rgb_to_hsv and "convert rgb to hsv"); leaks that keep their docstring score
# 0.74-1.0; reworded statements over renamed code 0.62-0.87, with the right item nearest in 16 of 16.
# 0.75 would catch 7 of those 16 but also flag ~0.1% of ordinary code, mostly same-task textbook code.
DEFAULT_EMBEDDING_THRESHOLD = 0.8
EMBEDDING_BATCH_SIZE = 64

METHOD_NGRAM = "ngram"
METHOD_SUBSTRING = "substring"
METHOD_EMBEDDING = "embedding"

_PLACEHOLDER = "ID"
_SEP = "\x1f"  # joins normalized tokens for substring search; never inside a token
_KEYWORDS = frozenset(keyword.kwlist)
_BUILTINS = frozenset(dir(builtins))
_PYTHON_ALIASES = frozenset({"", "python", "py", "python3", "py3", "sage", "ipython"})
_WORD = re.compile(r"\w+")
_STRING_LITERAL = re.compile(r"\A[rRbBuUfF]{0,2}(\"\"\"|'''|\"|')(.*)\1\Z", re.DOTALL)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# --- Public records ------------------------------------------------------------------------------------


class InstanceText(NamedTuple):
    """The text of one training instance. `key` is whatever the caller needs back (an id, a row number).

    `language` is the Pygments alias of the code in `input`/`output` when known; empty means Python
    first, with a graceful fallback. Fenced Markdown blocks (```java …```) use their own tag either way.
    """

    key: Hashable
    instruction: str
    input: str
    output: str
    language: str = ""


@dataclass(frozen=True)
class Match:
    """One piece of evidence that instance `key` leaks benchmark item `item_id`."""

    key: Hashable
    benchmark: str
    item_id: str
    method: str  # METHOD_NGRAM, METHOD_SUBSTRING or METHOD_EMBEDDING
    score: float  # n-gram containment, matched share of the statement/solution, or cosine similarity
    detail: str


def flagged_keys(matches: Iterable[Match]) -> set[Hashable]:
    """The keys of every instance with at least one match: the ones a dataset version leaves out."""
    return {match.key for match in matches}


# --- Tokenization ---------------------------------------------------------------------------------------


class Streams(NamedTuple):
    """Normalized token streams of one piece of code.

    `code`: keywords, lowercased names, numbers, single operator characters, and string literals as their
    content (so `'a'` and `"a"` are the same token). `renamed`: the same with every name that is not a
    keyword, a builtin or an attribute replaced by one placeholder. Comments, whitespace and docstrings
    are in neither.
    """

    code: list[str]
    renamed: list[str]


def _string_token(literal: str) -> str:
    match = _STRING_LITERAL.match(literal)
    # The quote character is kept out of the token on purpose: quote style is formatting, not content.
    return "'" + (match.group(2) if match else literal)


def _name_tokens(value: str, after_dot: bool, keywords: frozenset[str]) -> tuple[str, str]:
    if value in keywords:
        return value, value
    lowered = value.lower()
    # Builtins and attributes (`.append`, `.items`) stay: renaming a leak changes the author's own names,
    # and these are what keeps the renamed stream specific enough not to match ordinary code.
    if after_dot or value in _BUILTINS:
        return lowered, lowered
    return lowered, _PLACEHOLDER


class _StreamBuilder:
    """Accumulates both streams token by token, remembering whether the last token was a dot."""

    def __init__(self) -> None:
        self.code: list[str] = []
        self.renamed: list[str] = []
        self.after_dot = False

    def name(self, value: str, keywords: frozenset[str] = _KEYWORDS) -> None:
        code, renamed = _name_tokens(value, self.after_dot, keywords)
        self.code.append(code)
        self.renamed.append(renamed)
        self.after_dot = False

    def keyword(self, value: str) -> None:
        self.code.append(value)
        self.renamed.append(value)
        self.after_dot = False

    def literal(self, value: str) -> None:
        self.code.append(value)
        self.renamed.append(value)
        self.after_dot = False

    def ops(self, value: str) -> None:
        # Operators go in one character at a time: tokenize says `**` and `->`, Pygments sometimes `*`,
        # `*`; splitting makes both tokenizers (and any spacing) agree.
        for char in value:
            if not char.isspace():
                self.code.append(char)
                self.renamed.append(char)
                self.after_dot = char == "."

    def result(self) -> Streams:
        return Streams(self.code, self.renamed)


def _python_streams(code: str) -> Streams:
    """Streams from Python's own tokenizer; raises on code it cannot tokenize (unclosed strings, dedents)."""
    out = _StreamBuilder()
    held: list[str] = []  # strings opening a statement: a docstring if the statement ends right after them
    at_statement_start = True
    tk = tokenize
    skipped = {tk.COMMENT, tk.NL, tk.ENCODING}
    # Python 3.12 splits f-strings into parts; their text is kept as one literal, their quotes dropped.
    fstring_text = getattr(tk, "FSTRING_MIDDLE", None)
    skipped |= {getattr(tk, "FSTRING_START", tk.COMMENT), getattr(tk, "FSTRING_END", tk.COMMENT)}
    for tok in tk.generate_tokens(io.StringIO(code).readline):
        kind, value = tok.type, tok.string
        if kind in skipped:
            continue
        if kind == tk.STRING and (at_statement_start or held):
            held.append(value)
            at_statement_start = False
            continue
        if held:
            if kind not in (tk.NEWLINE, tk.ENDMARKER):  # the strings were an expression, not a docstring
                for literal in held:
                    out.literal(_string_token(literal))
            held.clear()
        if kind in (tk.NEWLINE, tk.INDENT, tk.DEDENT):
            at_statement_start = True
            continue
        at_statement_start = False
        if kind == tk.NAME:
            out.name(value)
        elif kind == tk.STRING:
            out.literal(_string_token(value))
        elif kind == fstring_text:
            out.literal("'" + value)
        elif kind == tk.NUMBER:
            out.literal(value.lower())
        elif kind != tk.ENDMARKER:
            out.ops(value)  # OP and ERRORTOKEN (a stray `$` or apostrophe)
    return out.result()


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    from pygments.lexers import PythonLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(language or "python", stripnl=False, ensurenl=False)
    except ClassNotFound:
        return PythonLexer(stripnl=False, ensurenl=False)


def _pygments_streams(code: str, language: str) -> Streams:
    """Streams from a Pygments lexer: any language, and Python that `tokenize` rejects (it never fails).

    For Python the rules match `_python_streams` (same names kept, same docstrings dropped), so an item
    read by one path and an instance read by the other still share their n-grams.
    """
    from pygments.token import Comment, Keyword, Name, Number, String, Text, Whitespace

    lexer = _lexer(language)
    python = lexer.name == "Python"  # also the fallback for a language Pygments does not know
    keywords = _KEYWORDS if python else frozenset()
    out = _StreamBuilder()
    pieces: list[str] = []  # pieces of the string literal being read
    interpolation = 0  # depth inside an f-string's `{…}`: those tokens belong to the string
    held: list[str] = []  # string literals that opened a statement: a docstring if a newline follows
    depth = 0  # bracket depth: a newline inside brackets does not end a statement
    at_statement_start = True
    string_starts_statement = False

    def end_string() -> None:
        if pieces:
            literal = _string_token("".join(pieces))
            pieces.clear()
            if string_starts_statement and python:
                held.append(literal)
            else:
                out.literal(literal)

    def release_held() -> None:
        for literal in held:
            out.literal(literal)
        held.clear()

    for ttype, value in lexer.get_tokens(code):
        if pieces and interpolation:
            pieces.append(value)
            if ttype in String.Interpol:
                interpolation += value.count("{") - value.count("}")
            continue
        if ttype in String.Doc:
            pieces.clear()  # a docstring: text, not code
            continue
        if ttype in String:
            if not pieces:
                string_starts_statement = at_statement_start or bool(held)
            pieces.append(value)
            if ttype in String.Interpol:
                interpolation += value.count("{") - value.count("}")
            continue
        end_string()
        # Whitespace, comments and line continuations (a backslash before a newline) carry no code.
        if ttype in Comment or ttype in Whitespace or (ttype in Text and value.strip() in ("", "\\")):
            if "\n" in value and depth == 0 and not value.strip():
                held.clear()  # strings alone on their line: a docstring (or a bare string), dropped
                at_statement_start = True
            continue
        release_held()
        at_statement_start = False
        if ttype in Keyword:
            for part in value.split():  # Pygments reads `yield from` as one keyword
                out.keyword(part)
        elif ttype in Number:
            out.literal(value.lower())
        elif ttype in Name and not python and ttype in Name.Builtin:
            out.keyword(value)  # `System`, `println`: the language's own names survive renaming
        elif _WORD.fullmatch(value):
            out.name(value, keywords)
        else:  # punctuation, operators, error tokens, and names such as the `.` of `import os.path`
            for part in re.findall(r"\w+|\S", value):
                if _WORD.fullmatch(part):
                    out.name(part, keywords)
                else:
                    depth = max(0, depth + (part in "([{") - (part in ")]}"))
                    out.ops(part)
    end_string()
    held.clear()
    return out.result()


def code_streams(code: str, language: str = "") -> Streams:
    """Normalized token streams of one piece of code (see `Streams`).

    Python (or unknown) code goes through Python's `tokenize`; when that fails (unclosed strings or
    brackets, inconsistent indentation, prose) Pygments' lexer takes over. A known other language uses
    its Pygments lexer directly, so its comments are dropped too.
    """
    if language.lower() in _PYTHON_ALIASES:
        try:
            return _python_streams(code)
        except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
            pass
    return _pygments_streams(code, language)


def _code_parts(text: str, language: str) -> list[tuple[str, str]]:
    """Split a field into (code, language) parts: fenced Markdown blocks use their own tag."""
    if "```" not in text:
        return [(text, language)]
    parts: list[tuple[str, str]] = []
    position = 0
    for fence in _FENCE.finditer(text):
        if text[position : fence.start()].strip():
            parts.append((text[position : fence.start()], language))
        parts.append((fence.group(2), fence.group(1).lower() or language))
        position = fence.end()
    if text[position:].strip():
        parts.append((text[position:], language))
    return parts


def words(text: str) -> list[str]:
    """The casefolded words of a text (letters, digits and underscores)."""
    return _WORD.findall(text.casefold())


def normalize_text(text: str) -> str:
    """Casefolded, with every run of whitespace made one space: the form substrings are compared in."""
    return " ".join(text.casefold().split())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The distinct n-grams of a token sequence (none when it is shorter than n)."""
    return set(zip(*(tokens[i:] for i in range(n)), strict=False))


# --- Benchmark side --------------------------------------------------------------------------------------


def _function_bodies(code: str) -> list[str]:
    """The source of each function body in `code` after its docstring, for whole-solution substrings."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    bodies = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            segments = [ast.get_source_segment(code, stmt, padded=True) or "" for stmt in body]
            bodies.append(textwrap.dedent("\n".join(segments)))
    return bodies


def _text_patterns(text: str, min_chars: int) -> list[str]:
    """The statement, its lines and its sentences, normalized; only those long enough to mean something."""
    candidates = [text, *text.splitlines(), *_SENTENCE_END.split(" ".join(text.split()))]
    patterns = {normalize_text(c) for c in candidates}
    return sorted((p for p in patterns if len(p) >= min_chars and len(words(p)) >= 3), key=len, reverse=True)


class _ItemIndex:
    """Benchmark n-grams of one stream: n-gram → item positions, plus each item's n-gram count."""

    def __init__(self) -> None:
        self.postings: dict[tuple[str, ...], list[int]] = {}
        self.totals: dict[int, int] = {}
        self.keys: frozenset[tuple[str, ...]] = frozenset()

    def add(self, item: int, grams: set[tuple[str, ...]], min_grams: int) -> None:
        if len(grams) < min_grams:
            return
        self.totals[item] = len(grams)
        for gram in grams:
            self.postings.setdefault(gram, []).append(item)

    def freeze(self) -> None:
        self.keys = frozenset(self.postings)

    def counts(self, grams: set[tuple[str, ...]]) -> Counter[int]:
        """How many of each item's n-grams are among `grams` (C-speed intersection, then the hits only)."""
        found: Counter[int] = Counter()
        for gram in self.keys & grams:
            found.update(self.postings[gram])
        return found


class _Features(NamedTuple):
    """What one instance is compared by: n-gram sets per stream, normalized texts, joined code."""

    code: set[tuple[str, ...]]
    renamed: set[tuple[str, ...]]
    words: set[tuple[str, ...]]
    word_anchors: set[tuple[str, ...]]
    texts: list[str]
    joined_code: list[str]


_STREAM_LABELS = {"code": "code", "renamed": "renamed-code", "words": "statement-word"}


class Decontaminator:
    """Checks training instances against benchmark items with n-grams, substrings and embeddings.

    Build it once per set of benchmarks (0.3 s for HumanEval and MBPP) and call `check` on instances in
    batches of any size. `embedding_threshold=None` turns the embedding method off; otherwise the
    embedder (default: the project's, `curation.embeddings.get_embedder()`) is loaded, and the items
    embedded, on the first `check`. Measured on 2 CPU cores, 5,000 instances take 1.3 s for the n-gram
    and substring methods and 210 s with MiniLM embeddings, which are nearly all of the cost.
    """

    def __init__(
        self,
        items: Sequence[BenchmarkItem],
        *,
        ngram: int = DEFAULT_NGRAM,
        ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
        min_item_ngrams: int = DEFAULT_MIN_ITEM_NGRAMS,
        min_renamed_item_ngrams: int = DEFAULT_MIN_RENAMED_ITEM_NGRAMS,
        substring_min_chars: int = DEFAULT_SUBSTRING_MIN_CHARS,
        embedding_threshold: float | None = DEFAULT_EMBEDDING_THRESHOLD,
        embedder: Embedder | None = None,
        embedding_batch_size: int = EMBEDDING_BATCH_SIZE,
    ) -> None:
        if not items:
            raise ValueError("Decontaminator needs at least one benchmark item.")
        if ngram < 2:
            raise ValueError(f"ngram must be at least 2, got {ngram}.")
        if not 0 < ngram_threshold <= 1:
            raise ValueError(f"ngram_threshold must be in (0, 1], got {ngram_threshold}.")
        if embedding_threshold is not None and not -1 <= embedding_threshold <= 1:
            raise ValueError(f"embedding_threshold must be a cosine in [-1, 1], got {embedding_threshold}.")
        self.items = list(items)
        self.ngram = ngram
        self.ngram_threshold = ngram_threshold
        self.substring_min_chars = substring_min_chars
        self.embedding_threshold = embedding_threshold
        self.embedding_batch_size = embedding_batch_size
        self._embedder = embedder
        self._item_vectors: np.ndarray | None = None

        self._streams = {name: _ItemIndex() for name in _STREAM_LABELS}
        # Substring patterns: anchor (first words, or first code n-gram) → [(item, pattern, kind, share)].
        self._text_anchors: dict[tuple[str, ...], list[tuple[int, str, str, float]]] = {}
        self._code_anchors: dict[tuple[str, ...], list[tuple[int, str, str, float]]] = {}
        for position, item in enumerate(self.items):
            self._index_item(position, item, min_item_ngrams, min_renamed_item_ngrams)
        for index in self._streams.values():
            index.freeze()
        self._text_anchor_keys = frozenset(self._text_anchors)
        self._code_anchor_keys = frozenset(self._code_anchors)

    # -- indexing ---------------------------------------------------------------------------------------

    def _index_item(self, position: int, item: BenchmarkItem, min_grams: int, min_renamed_grams: int) -> None:
        n = self.ngram
        streams = code_streams(item.code, item.language)
        self._streams["code"].add(position, ngrams(streams.code, n), min_grams)
        self._streams["renamed"].add(position, ngrams(streams.renamed, n), min_renamed_grams)
        self._streams["words"].add(position, ngrams(words(item.text), n), min_grams)

        whole_text = normalize_text(item.text)
        for pattern in _text_patterns(item.text, self.substring_min_chars):
            kind = "statement" if pattern == whole_text else "statement line"
            anchor = tuple(words(pattern)[:3])
            share = len(pattern) / max(len(whole_text), 1)
            self._text_anchors.setdefault(anchor, []).append((position, pattern, kind, share))

        whole_code = _SEP.join(streams.code)
        seen: set[str] = set()
        bodies = [("function body", code_streams(b, item.language).code) for b in _function_bodies(item.code)]
        for kind, tokens in [("solution", streams.code), *bodies]:
            joined = _SEP.join(tokens)
            # Length is measured without separators, i.e. roughly the code's length without whitespace.
            if len(tokens) < n or len(joined) - len(tokens) < self.substring_min_chars or joined in seen:
                continue
            seen.add(joined)
            share = len(joined) / max(len(whole_code), 1)
            self._code_anchors.setdefault(tuple(tokens[:n]), []).append((position, joined, kind, share))

    # -- checking ---------------------------------------------------------------------------------------

    def _features(self, instance: InstanceText) -> _Features:
        n = self.ngram
        code: set[tuple[str, ...]] = set()
        renamed: set[tuple[str, ...]] = set()
        word_grams: set[tuple[str, ...]] = set()
        anchors: set[tuple[str, ...]] = set()
        texts: list[str] = []
        joined: list[str] = []
        for field in (instance.instruction, instance.input, instance.output):
            if not field or not field.strip():
                continue
            field_words = words(field)
            word_grams |= ngrams(field_words, n)
            anchors |= ngrams(field_words, 3)
            texts.append(normalize_text(field))
            for part, language in _code_parts(field, instance.language):
                streams = code_streams(part, language)
                code |= ngrams(streams.code, n)
                renamed |= ngrams(streams.renamed, n)
                joined.append(_SEP + _SEP.join(streams.code) + _SEP)
        return _Features(code, renamed, word_grams, anchors, texts, joined)

    def _ngram_matches(self, key: Hashable, features: _Features) -> list[Match]:
        best: dict[int, tuple[float, str, int, int]] = {}
        for stream, label in _STREAM_LABELS.items():
            index = self._streams[stream]
            for item, found in index.counts(getattr(features, stream)).items():
                total = index.totals[item]
                score = found / total
                if score >= self.ngram_threshold and score > best.get(item, (0.0,))[0]:
                    best[item] = (score, label, found, total)
        return [
            Match(
                key,
                self.items[item].benchmark,
                self.items[item].item_id,
                METHOD_NGRAM,
                round(score, 4),
                f"{found} of the item's {total} {label} {self.ngram}-grams occur in the instance",
            )
            for item, (score, label, found, total) in best.items()
        ]

    def _substring_matches(self, key: Hashable, features: _Features) -> list[Match]:
        best: dict[int, tuple[float, str, str]] = {}

        def consider(candidates: list[tuple[int, str, str, float]], haystacks: list[str], code: bool) -> None:
            for item, pattern, kind, share in candidates:
                if share <= best.get(item, (0.0,))[0]:
                    continue
                needle = _SEP + pattern + _SEP if code else pattern
                if any(needle in haystack for haystack in haystacks):
                    shown = pattern.replace(_SEP, " ") if code else pattern
                    shown = shown if len(shown) <= 80 else shown[:77] + "…"
                    best[item] = (share, kind, shown)

        for anchor in self._text_anchor_keys & features.word_anchors:
            consider(self._text_anchors[anchor], features.texts, code=False)
        for anchor in self._code_anchor_keys & features.code:
            consider(self._code_anchors[anchor], features.joined_code, code=True)
        return [
            Match(
                key,
                self.items[item].benchmark,
                self.items[item].item_id,
                METHOD_SUBSTRING,
                round(min(share, 1.0), 4),
                f"{kind} found verbatim: {shown!r}",
            )
            for item, (share, kind, shown) in best.items()
        ]

    def _embedder_or_default(self) -> Embedder:
        if self._embedder is None:
            from curation.embeddings import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    def item_vectors(self) -> np.ndarray:
        """Unit vectors of the benchmark items (statement and solution), computed once."""
        if self._item_vectors is None:
            texts = [item_embedding_text(item) for item in self.items]
            vectors = self._embedder_or_default().encode(texts, batch_size=self.embedding_batch_size)
            self._item_vectors = np.asarray(vectors, dtype=np.float32)
        return self._item_vectors

    def _embedding_matches(self, instances: Sequence[InstanceText]) -> list[list[Match]]:
        """Per instance, every item at least `embedding_threshold` similar to it (the nearest first)."""
        assert self.embedding_threshold is not None
        result: list[list[Match]] = [[] for _ in instances]
        owners = [i for i, instance in enumerate(instances) if instance_embedding_text(instance)]
        if not owners:
            return result
        items = self.item_vectors()
        texts = [instance_embedding_text(instances[i]) for i in owners]
        vectors = self._embedder_or_default().encode(texts, batch_size=self.embedding_batch_size)
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(vectors), 4096):  # bounded memory: 4096 × items floats at a time
            similarity = vectors[start : start + 4096] @ items.T
            rows, cols = np.nonzero(similarity >= self.embedding_threshold)
            for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
                score = float(similarity[row, col])
                instance = instances[owners[start + row]]
                result[owners[start + row]].append(
                    Match(
                        instance.key,
                        self.items[col].benchmark,
                        self.items[col].item_id,
                        METHOD_EMBEDDING,
                        round(score, 4),
                        f"cosine similarity {score:.3f} to the benchmark item "
                        f"(threshold {self.embedding_threshold})",
                    )
                )
        return result

    def check(
        self,
        instances: Sequence[InstanceText],
        *,
        on_progress: Callable[[int], None] | None = None,
        chunk_size: int = 2048,
    ) -> list[Match]:
        """Every match of every instance, grouped by instance in input order, strongest first.

        An instance may match several items and by several methods; `flagged_keys` reduces the list to
        the instances to leave out. `on_progress(n)` is called after each chunk of n instances.
        """
        matches: list[Match] = []
        for start in range(0, len(instances), chunk_size):
            chunk = instances[start : start + chunk_size]
            embedded = (
                self._embedding_matches(chunk) if self.embedding_threshold is not None else [[]] * len(chunk)
            )
            for instance, by_embedding in zip(chunk, embedded, strict=True):
                features = self._features(instance)
                found = [
                    *self._substring_matches(instance.key, features),
                    *self._ngram_matches(instance.key, features),
                    *by_embedding,
                ]
                found.sort(key=lambda m: (-m.score, m.method, m.benchmark, m.item_id))
                matches.extend(found)
            if on_progress:
                on_progress(len(chunk))
        return matches


def item_embedding_text(item: BenchmarkItem) -> str:
    """What is embedded for a benchmark item: its statement, then its solution."""
    return f"{item.text.strip()}\n{item.code.strip()}".strip()


def instance_embedding_text(instance: InstanceText) -> str:
    """What is embedded for an instance: its instruction, input and output, in that order.

    The whole instance rather than the output alone: MiniLM reads names and prose far more than code
    structure, so a leak with a reworded statement and renamed code is found by its instruction. On the
    16 paraphrased leaks of tests/training/fixtures the benchmark item is then the nearest neighbour for
    16, against 3 when only the output is embedded.
    """
    parts = (instance.instruction, instance.input, instance.output)
    return "\n".join(part.strip() for part in parts if part and part.strip())
