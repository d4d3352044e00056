"""BM25 over the same chunks as the vector store, with one analyzer for French and English.

The index is derived data, kept per document: each document's postings are added, replaced or removed on their
own (in proportion to that document, not to the corpus), persisted as one file per document beside the store,
and tagged with the key of the indexed state they were read from, so a process sharing the store (a replica)
catches up on what another changed by reading only the documents whose key differs (`rag.refresh`).

Opening reads a checkpoint, the whole index's arrays in one file, then only the document files written or removed
since (told apart by size and modification time): parsing every document's file took 51 s at 157k chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from index.types import file_name_words
from rag.language import LANGUAGES, Language, detect_language

log = logging.getLogger(__name__)

_ELISION = re.compile(r"^(?:l|d|qu|j|n|s|c|m|t|jusqu|lorsqu|puisqu)['’]", re.IGNORECASE)
_TOKEN = re.compile(r"[\w'’]+", re.UNICODE)
# An English possessive is its noun ("DeepSeek’s" is DeepSeek), typed with either apostrophe: left on, "’s" made
# "deepseek’", a token no other "DeepSeek" matches.
_POSSESSIVE = re.compile(r"['’]s$")
_EN_STOPWORDS = set(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves according says said
    """.split()
)
_FR_STOPWORDS = set(
    """
    au aux avec ce ces dans de des du elle en et eux il ils je la le les leur lui ma mais me meme
    mes moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton
    tu un une vos votre vous c d j l m n s t y ete etee etees etes etant suis es est sommes sont
    serai sera seront serait seraient etais etait etaient fus fut furent sois soit soient ai as
    avons avez ont aurai aura auront aurait auraient avais avait avaient eu eue eus eut furent cette
    cet celui celle ceux celles dont ou quel quelle quels quelles selon comme plus moins tres aussi
    donc ainsi alors leurs si sans sous entre vers chez lors apres avant depuis pendant tout tous
    toute toutes
    """.split()
)
STOPWORDS = frozenset(_EN_STOPWORDS | _FR_STOPWORDS)
_LANGUAGE_STOPWORDS: dict[str, frozenset[str]] = {"en": frozenset(_EN_STOPWORDS), "fr": frozenset(_FR_STOPWORDS)}


def fold(text: str) -> str:
    """Lowercase and strip accents, so "Données" and "donnees" meet."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def light_stem(token: str) -> str:
    """Plural and feminine endings only: aggressive stemmers conflate unrelated words across two languages."""
    if len(token) > 4 and token.endswith(("s", "x")) and not token.endswith("ss"):
        token = token[:-1]
    if len(token) > 4 and token.endswith("e"):
        token = token[:-1]
    return token


# French and English cognates share their first five letters ("régulation"/"regulation", "modèle"/"model",
# "accès"/"access", "transfert"/"transfer"): how words of the two languages are compared.
COGNATE_LETTERS = 5


def cognates(tokens: Iterable[str]) -> set[str]:
    """Tokens (`analyze`'s) as they compare across French and English: their first `COGNATE_LETTERS` letters."""
    return {token[:COGNATE_LETTERS] for token in tokens}


def analyze(text: str) -> list[str]:
    """Tokens for matching words in either language: elisions (l'/d'/qu'...) removed, folded, stopwords of both
    languages dropped, plural and feminine endings stemmed (`light_stem`)."""
    return _tokens(text, "")


def analyze_in(text: str, language: Language) -> list[str]:
    """Tokens for BM25 in one known language: as `analyze`, but English words go through the Snowball (Porter2)
    stemmer, so "applies" and "apply" meet. Safe because each chunk is stemmed in its own language and each query
    in the language searched: the two languages' rules never meet one text. French keeps `light_stem`: Snowball's
    French stemmer merges unrelated words ("organisme", "organe") and did not generalise (docs/evaluation.md).
    Only that language's stopwords go, so the English "AI" stays although the French "ai" (has) is one."""
    return _tokens(text, language)


def _tokens(text: str, language: str) -> list[str]:
    tokens = (_token(raw, language) for raw in _TOKEN.findall(text.lower()))
    return [token for token in tokens if token is not None]


@lru_cache(maxsize=1 << 18)
def _token(raw: str, language: str) -> str | None:
    """One lowercased word's token in `language` ("": either language, see `analyze`), None when it is dropped.
    Cached because words repeat: analysing every word afresh was most of a lexical index's build."""
    word = _POSSESSIVE.sub("", strip_elision(raw)).strip("'’_")
    folded = fold(word)
    stopwords = _LANGUAGE_STOPWORDS[language] if language else STOPWORDS
    if not folded or folded in stopwords or (len(folded) == 1 and not folded.isdigit()):
        return None
    if language == "en":
        return fold(_english_stemmer().stemWord(word))
    return light_stem(folded)


def analyze_query(text: str) -> list[str]:
    """A query's BM25 tokens when the passages it must match may be in either language: each word stemmed both
    ways (a passage holds one language's stems, so the other's rarely match it)."""
    stems = {language: analyze_in(text, language) for language in LANGUAGES}
    return list(dict.fromkeys(token for language in LANGUAGES for token in stems[language]))


@lru_cache(maxsize=1 << 12)
def _name_tokens(source: str) -> frozenset[str]:
    """A file name's words as a query in either language reads them (`analyze_query`)."""
    return frozenset(analyze_query(file_name_words(source)))


def strip_elision(word: str) -> str:
    """The word without a French elided article or pronoun ("l'énergie" -> "énergie", "qu'il" -> "il")."""
    return _ELISION.sub("", word)


@lru_cache(maxsize=1)
def _english_stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


# bm25s's defaults ("lucene" BM25), which the index used when it was rebuilt whole: scores are unchanged.
_K1, _B = 1.5, 0.75
_EMPTY = "\x00"  # an empty-token chunk still counts as a document of length 1 (queries never hold this token)
# Postings of documents added since the last merge are kept aside (lists by term) and merged into the base
# arrays once they reach a quarter of it, so a merge's cost is spread over the additions that made it due.
_MERGE_FRACTION = 4
_MERGE_MIN_POSTINGS = 50_000


@dataclass(frozen=True)
class LexicalHit:
    chunk_id: str
    score: float


@dataclass(frozen=True)
class LexicalEntry:
    """One chunk as BM25 reads it: its id, its search text and its language ("" = detect)."""

    chunk_id: str
    text: str
    language: str = ""


@dataclass
class _Segment:
    """One document's rows, and each row's distinct terms (their document frequencies fall when it goes)."""

    key: str
    rows: np.ndarray
    terms: np.ndarray
    file: tuple[int, int] | None = None  # its file's (size, mtime_ns) when written or read: the checkpoint's proof


_CHECKPOINT = "checkpoint.npz"
_CHECKPOINT_VERSION = 1


class _Column:
    """A numpy array that grows at its end in amortised constant time per element."""

    def __init__(self, dtype: type):
        self._data = np.zeros(16, dtype=dtype)
        self.size = 0

    def extend(self, values: Sequence | np.ndarray) -> None:
        needed = self.size + len(values)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : needed] = values
        self.size = needed

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def replace(self, values: np.ndarray) -> None:
        self._data, self.size = np.array(values, dtype=self._data.dtype), len(values)


class LexicalIndex:
    """BM25 over analysed chunk texts, updated one document at a time; `search` never rebuilds anything.

    Postings live in a base (by term: rows and term frequencies, in arrays) plus those of documents added since
    the last merge; a removed document's rows are masked until the next merge drops them. Scores are computed
    at query time from term frequencies, document frequencies and the average length of the documents present,
    with bm25s's formula and float types, so they equal what a bm25s index built over the same chunks gives.
    Thread-safe: updates and searches take one lock."""

    def __init__(self, directory: Path | None = None):
        """`directory`: where each document's postings are persisted (memory only when None)."""
        self._lock = threading.RLock()
        self._directory = directory
        self._vocabulary: dict[str, int] = {}
        self._document_frequency = _Column(np.int64)
        self._ids: list[str] = []
        self._row_source = _Column(np.int32)
        self._row_length = _Column(np.int64)
        self._alive = _Column(np.bool_)
        self._source_numbers: dict[str, int] = {}
        self._source_names: list[str] = []  # the inverse: number -> source, so no query rebuilds it
        self._segments: dict[str, _Segment] = {}
        self._live_rows = 0
        self._live_length = 0
        self._base_pointers = np.zeros(1, dtype=np.int64)
        self._base_rows = np.zeros(0, dtype=np.int64)
        self._base_frequencies = np.zeros(0, dtype=np.float32)
        self._recent: dict[int, tuple[list[int], list[int]]] = {}
        self._recent_postings = 0

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        sources: Sequence[str],
        texts: Sequence[str],
        languages: Sequence[str] | None = None,
        *,
        key: str = "",
    ) -> LexicalIndex:
        """An index in memory over these chunks, each document's under `key`."""
        index = cls()
        documents: dict[str, list[LexicalEntry]] = {}
        for chunk_id, source, text, language in zip(ids, sources, texts, languages or [""] * len(ids), strict=True):
            documents.setdefault(source, []).append(LexicalEntry(chunk_id, text, language))
        for source, entries in documents.items():
            index.put(source, key, entries)
        return index

    def __len__(self) -> int:
        return self._live_rows

    @property
    def ids(self) -> list[str]:
        """The chunk ids indexed, document by document in the order they were put."""
        with self._lock:
            return [self._ids[row] for segment in self._segments.values() for row in segment.rows]

    def keys(self) -> dict[str, str]:
        """Each indexed document's key: what the index read of it (see `rag.refresh.lexical_key`)."""
        with self._lock:
            return {source: segment.key for source, segment in self._segments.items()}

    # --- updates: in proportion to the document -----------------------------------------------------------
    def put(self, source: str, key: str, entries: Sequence[LexicalEntry]) -> None:
        """Index (or re-index) one document's chunks, replacing what the index held of it."""
        counts = [Counter(analyze_in(e.text, e.language or detect_language(e.text)) or [_EMPTY]) for e in entries]
        with self._lock:
            self._put_counted(source, key, [e.chunk_id for e in entries], counts)
            if self._directory is not None:
                path = _write_segment(self._directory, source, key, [e.chunk_id for e in entries], counts)
                self._segments[source].file = _signature(path.stat())

    def remove(self, source: str) -> None:
        """Forget one document (nothing when it is not indexed)."""
        with self._lock:
            self._drop(source)
            if self._directory is not None:
                _segment_path(self._directory, source).unlink(missing_ok=True)
            if len(self._ids) > 2 * max(self._live_rows, 1):
                self._merge()  # masked rows outnumber live ones: drop them

    def _put_counted(self, source: str, key: str, ids: Sequence[str], counts: Sequence[Counter[str]]) -> None:
        self._drop(source)
        number = self._source_numbers.get(source)
        if number is None:
            number = self._source_numbers[source] = len(self._source_names)
            self._source_names.append(source)
        first = len(self._ids)
        rows = np.arange(first, first + len(ids), dtype=np.int64)
        distinct: list[int] = []
        lengths = []
        for row, count in zip(rows.tolist(), counts, strict=True):
            for term, frequency in count.items():
                term_id = self._vocabulary.get(term)
                if term_id is None:
                    term_id = self._vocabulary[term] = len(self._vocabulary)
                    self._document_frequency.extend([0])
                    self._recent[term_id] = ([], [])
                postings = self._recent.setdefault(term_id, ([], []))
                postings[0].append(row)
                postings[1].append(frequency)
                distinct.append(term_id)
            lengths.append(sum(count.values()))
        terms = np.array(distinct, dtype=np.int64)
        np.add.at(self._document_frequency.view, terms, 1)
        self._ids += ids
        self._row_source.extend([number] * len(ids))
        self._row_length.extend(lengths)
        self._alive.extend([True] * len(ids))
        self._segments[source] = _Segment(key, rows, terms)
        self._live_rows += len(ids)
        self._live_length += sum(lengths)
        self._recent_postings += len(terms)
        if self._recent_postings >= max(_MERGE_MIN_POSTINGS, len(self._base_rows) // _MERGE_FRACTION):
            self._merge()

    def _drop(self, source: str) -> None:
        segment = self._segments.pop(source, None)
        if segment is None:
            return
        self._alive.view[segment.rows] = False
        np.subtract.at(self._document_frequency.view, segment.terms, 1)
        self._live_rows -= len(segment.rows)
        self._live_length -= int(self._row_length.view[segment.rows].sum())

    def _merge(self) -> None:
        """Fold the recent postings into the base and drop masked rows (rows are renumbered)."""
        if not self._recent_postings and len(self._ids) == self._live_rows:
            return  # nothing recent, nothing masked: the base is already what a merge would give
        vocabulary = len(self._vocabulary)
        base_terms = np.repeat(np.arange(len(self._base_pointers) - 1), np.diff(self._base_pointers))
        recent_terms = [np.full(len(rows), term) for term, (rows, _) in self._recent.items()]
        terms = np.concatenate([base_terms, *recent_terms]).astype(np.int64)
        rows = np.concatenate([self._base_rows, *(np.array(r, np.int64) for r, _ in self._recent.values())])
        frequencies = np.concatenate(
            [self._base_frequencies, *(np.array(f, np.float32) for _, f in self._recent.values())]
        )
        alive = self._alive.view
        keep = alive[rows]
        renumbered = np.cumsum(alive) - 1
        terms, rows, frequencies = terms[keep], renumbered[rows[keep]], frequencies[keep]
        order = np.lexsort((rows, terms))
        self._base_rows, self._base_frequencies = rows[order], frequencies[order]
        self._base_pointers = np.concatenate([[0], np.cumsum(np.bincount(terms, minlength=vocabulary))])
        self._recent, self._recent_postings = {}, 0
        survivors = np.flatnonzero(alive)
        self._ids = [self._ids[row] for row in survivors.tolist()]
        self._row_source.replace(self._row_source.view[survivors])
        self._row_length.replace(self._row_length.view[survivors])
        self._alive.replace(np.ones(len(survivors), dtype=np.bool_))
        for segment in self._segments.values():
            segment.rows = renumbered[segment.rows]

    # --- search -------------------------------------------------------------------------------------------
    def search(
        self, query: str, k: int, sources: Sequence[str] | None = None, language: Language | None = None
    ) -> list[LexicalHit]:
        """`language`: the query's, when only passages in that language are wanted (stemmed its way only).
        Equal scores rank by chunk id, so every replica ranks alike whatever order it indexed in."""
        tokens = analyze_in(query, language) if language else analyze_query(query)
        with self._lock:
            term_ids = [self._vocabulary[t] for t in tokens if t in self._vocabulary]
            if not term_ids or not self._live_rows:
                return []
            scores = self._scores(term_ids)
            if sources:
                wanted = [self._source_numbers[s] for s in sources if s in self._source_numbers]
                scores[~np.isin(self._row_source.view, wanted)] = 0.0
            found = np.flatnonzero(scores > 0)
            if len(found) > k:  # the k best, and every row tied with the k-th
                floor = np.partition(scores[found], len(found) - k)[len(found) - k]
                found = found[scores[found] >= floor]
            ranked = sorted(found.tolist(), key=lambda row: (-scores[row], self._ids[row]))[:k]
            return [LexicalHit(self._ids[row], float(scores[row])) for row in ranked]

    def named_sources(self, query: str, language: Language, sources: Sequence[str] | None = None) -> list[str]:
        """The documents a query names: a word of their file names that no other document holds, in its text or
        its name. "d'après Wikipédia" names the Wikipedia pages; "distillation", which one page's name holds but
        other documents' text does too, names nothing: there the word tells the topic, not the source. Two or
        three adjacent words count as one too, as file names write them ("Pause IA" names pauseia_*.md). A word
        every document in scope holds names none; `sources` bounds the scope, as in `search`. The query is read in
        its `language`, whose stopwords go: the French "en" is no name for every "*_en.md" file."""
        words = _TOKEN.findall(query.lower())
        joined = " ".join("".join(words[i : i + n]) for n in (2, 3) for i in range(len(words) - n + 1))
        with self._lock:
            in_scope = self._segments.keys() if sources is None else {s for s in sources if s in self._segments}
            named: set[str] = set()
            for token in set(analyze_in(f"{query} {joined}", language)):
                if token not in self._vocabulary:
                    continue
                rows, _ = self._postings(self._vocabulary[token])
                holders = {self._source_names[n] for n in np.unique(self._row_source.view[rows]).tolist()}
                held_in_scope = {s for s in holders if s in in_scope}
                if len(held_in_scope) == len(in_scope):
                    continue  # every document searched holds it: it names none, and no file name need be read
                if all(token in _name_tokens(s) for s in holders):
                    named |= held_in_scope
            return sorted(named)

    def _scores(self, term_ids: list[int]) -> np.ndarray:
        """bm25s's "lucene" BM25 of every row, with its float types and order of operations (float32 per term
        and row, summed in float32 term by term), from the statistics of the documents present."""
        documents, average = self._live_rows, self._live_length / self._live_rows
        lengths, frequency = self._row_length.view, self._document_frequency.view
        scores = np.zeros(len(self._ids), dtype=np.float32)
        for term_id in term_ids:
            rows, term_frequencies = self._postings(term_id)
            if not len(rows):
                continue
            df = int(frequency[term_id])
            idf = np.float32(math.log(1 + (documents - df + 0.5) / (df + 0.5)))
            saturation = term_frequencies / (_K1 * ((1 - _B) + _B * lengths[rows] / average) + term_frequencies)
            np.add.at(scores, rows, (idf * saturation).astype(np.float32))
        return scores

    def _postings(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The live rows holding a term, and its frequency in each."""
        rows, frequencies = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if term_id < len(self._base_pointers) - 1:
            start, end = self._base_pointers[term_id], self._base_pointers[term_id + 1]
            rows, frequencies = self._base_rows[start:end], self._base_frequencies[start:end]
        recent = self._recent.get(term_id)
        if recent and recent[0]:
            rows = np.concatenate([rows, np.array(recent[0], np.int64)])
            frequencies = np.concatenate([frequencies, np.array(recent[1], np.float32)])
        alive = self._alive.view[rows]
        return rows[alive], frequencies[alive]

    # --- persistence: one file per document ----------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path) -> LexicalIndex:
        """The index persisted in `directory` (empty if there is none): its checkpoint, then the document files
        that differ from what the checkpoint read (a new checkpoint follows when they are many: `checkpoint_due`).
        A document file that is damaged in any way is reported, deleted and left out, and so is a damaged checkpoint
        (every file is then read): the index is derived data, so the caller's catch-up reads such a document again
        from the store instead of failing questions on it."""
        index = cls(directory)
        _retire_whole_index_files(directory)
        folder = directory / "segments"
        files = _signatures(folder)
        index._restore(directory / _CHECKPOINT)
        with index._lock:
            checkpointed, held = len(index._segments), set()
            for source, segment in list(index._segments.items()):
                name = _segment_path(directory, source).name
                if files.get(name) == segment.file:
                    held.add(name)
                else:  # written again or removed since the checkpoint
                    index._drop(source)
            read = 0
            for name in sorted(files.keys() - held):
                path = folder / name
                try:
                    source, key, ids, counts = _read_segment(path)
                except Exception as error:  # json and type checks raise many kinds on damaged files; all mean re-read
                    log.warning("Lexical index file %s unusable, reading its document again: %s", path, error)
                    path.unlink(missing_ok=True)
                    continue
                index._put_counted(source, key, ids, counts)
                index._segments[source].file = files[name]
                read += 1
            dropped = checkpointed - len(held)
            if index.checkpoint_due(read + dropped):
                index.checkpoint()
            else:
                index._merge()
        return index

    def checkpoint_due(self, changed_documents: int) -> bool:
        """Whether work that just changed this many documents should be followed by a checkpoint: when it was a
        quarter of the documents or more (the merge rule's fraction), so a checkpoint, which costs what the whole
        index costs, is paid for by work of the same order, and an open never reads more than about a quarter of
        the document files."""
        return (
            self._directory is not None
            and changed_documents > 0
            and changed_documents * _MERGE_FRACTION >= len(self._segments)
        )

    def checkpoint(self) -> None:
        """Write the whole index to one file beside the document files (merged first), so the next `open` loads
        arrays and reads only the document files written since. Costs in proportion to the corpus: called when an
        open or a rebuild has just read many documents, not on each update."""
        with self._lock:
            if self._directory is None:
                raise ValueError("an index in memory has no directory to write to")
            self._merge()
            sources = list(self._segments)
            segments = list(self._segments.values())
            signed = [s.file if s.file else (-1, -1) for s in segments]
            arrays = {
                "version": np.array([_CHECKPOINT_VERSION]),
                **_packed("vocabulary", self._vocabulary),
                "document_frequency": self._document_frequency.view,
                **_packed("ids", self._ids),
                "row_source": self._row_source.view,
                "row_length": self._row_length.view,
                **_packed("source_numbers", self._source_numbers),
                "base_pointers": self._base_pointers,
                "base_rows": self._base_rows,
                "base_frequencies": self._base_frequencies,
                **_packed("sources", sources),
                **_packed("keys", (s.key for s in segments)),
                "files": np.array(signed, dtype=np.int64).reshape(len(segments), 2),
                "segment_rows": _flat(s.rows for s in segments),
                "row_offsets": _offsets(len(s.rows) for s in segments),
                "segment_terms": _flat(s.terms for s in segments),
                "term_offsets": _offsets(len(s.terms) for s in segments),
            }
            self._directory.mkdir(parents=True, exist_ok=True)
            staging = self._directory / f".{_CHECKPOINT}.{os.getpid()}.{threading.get_ident()}.tmp.npz"
            np.savez(staging, **arrays)
            os.replace(staging, self._directory / _CHECKPOINT)

    def _restore(self, path: Path) -> None:
        """Load a checkpoint into this (empty) index, if there is one; a damaged one is reported, deleted and left
        out (the index stays empty)."""
        if not path.exists():
            return
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            state = _checked_checkpoint(arrays)
        except Exception as error:  # any damage means: read every document file instead
            log.warning("Lexical index checkpoint %s unusable, reading every document file: %s", path, error)
            path.unlink(missing_ok=True)
            return
        with self._lock:
            self._vocabulary = {term: n for n, term in enumerate(state["vocabulary"])}
            self._document_frequency.replace(arrays["document_frequency"])
            self._ids = state["ids"]
            self._row_source.replace(arrays["row_source"])
            self._row_length.replace(arrays["row_length"])
            self._alive.replace(np.ones(len(self._ids), dtype=np.bool_))
            self._source_names = list(state["source_numbers"])
            self._source_numbers = {source: n for n, source in enumerate(self._source_names)}
            self._base_pointers = arrays["base_pointers"]
            self._base_rows = arrays["base_rows"]
            self._base_frequencies = arrays["base_frequencies"]
            rows, terms = (
                np.split(arrays["segment_rows"], arrays["row_offsets"][1:-1]),
                np.split(arrays["segment_terms"], arrays["term_offsets"][1:-1]),
            )
            for n, (source, key) in enumerate(zip(state["sources"], state["keys"], strict=True)):
                size, mtime = (int(v) for v in arrays["files"][n])
                self._segments[source] = _Segment(key, rows[n], terms[n], (size, mtime) if size >= 0 else None)
            self._live_rows = len(self._ids)
            self._live_length = int(self._row_length.view.sum())

    def move_to(self, directory: Path) -> None:
        """Make `directory` this index's home, replacing whatever index was persisted there (after a rebuild
        built aside); the files move, none is rewritten."""
        with self._lock:
            if self._directory is None:
                raise ValueError("an index in memory has no files to move")
            retired = directory.with_name(directory.name + ".old")
            shutil.rmtree(retired, ignore_errors=True)
            if directory.exists():
                os.replace(directory, retired)
            os.replace(self._directory, directory)
            shutil.rmtree(retired, ignore_errors=True)
            self._directory = directory


def _signature(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_size, stat.st_mtime_ns


def _signatures(folder: Path) -> dict[str, tuple[int, int]]:
    """Each document file's signature by name; a file another process removes meanwhile is left out."""
    found: dict[str, tuple[int, int]] = {}
    for entry in os.scandir(folder) if folder.is_dir() else []:
        if entry.name.endswith(".json"):
            try:
                found[entry.name] = _signature(entry.stat())
            except FileNotFoundError:
                continue
    return found


def _packed(name: str, strings: Iterable[str]) -> dict[str, np.ndarray]:
    """Strings as two arrays: their UTF-8 bytes end to end, and where each ends (any character may occur)."""
    encoded = [string.encode("utf-8") for string in strings]
    return {
        f"{name}_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        f"{name}_ends": np.cumsum([len(e) for e in encoded], dtype=np.int64),
    }


def _unpacked(arrays: dict[str, np.ndarray], name: str, count: int) -> list[str]:
    data, ends = arrays[f"{name}_bytes"].tobytes(), arrays[f"{name}_ends"]
    if len(ends) != count or (count and (ends[-1] != len(data) or np.any(np.diff(ends) < 0) or ends[0] < 0)):
        raise ValueError(f"{name}: {len(ends)} strings where {count} were expected, or bounds out of order")
    starts = [0, *ends[:-1].tolist()]
    return [data[a:b].decode("utf-8") for a, b in zip(starts, ends.tolist(), strict=True)]


def _flat(parts: Iterable[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64)


def _offsets(lengths: Iterable[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(list(lengths), dtype=np.int64)]).astype(np.int64)


def _checked_checkpoint(arrays: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """The checkpoint's strings, once every array's shape and range agree with the others (ValueError if not)."""
    if arrays["version"].tolist() != [_CHECKPOINT_VERSION]:
        raise ValueError(f"version {arrays['version'].tolist()}, not {_CHECKPOINT_VERSION}")
    terms, rows = len(arrays["document_frequency"]), len(arrays["row_source"])
    pointers, segments = arrays["base_pointers"], len(arrays["files"])
    state = {
        "vocabulary": _unpacked(arrays, "vocabulary", terms),
        "ids": _unpacked(arrays, "ids", rows),
        "sources": _unpacked(arrays, "sources", segments),
        "keys": _unpacked(arrays, "keys", segments),
        "source_numbers": _unpacked(arrays, "source_numbers", len(arrays["source_numbers_ends"])),
    }
    checks = [
        len(arrays["row_length"]) == rows and len(pointers) == terms + 1 and pointers[0] == 0,
        np.all(np.diff(pointers) >= 0) and pointers[-1] == len(arrays["base_rows"]) == len(arrays["base_frequencies"]),
        len(arrays["row_offsets"]) == len(arrays["term_offsets"]) == segments + 1,
        arrays["row_offsets"][-1] == len(arrays["segment_rows"]) == rows,
        arrays["term_offsets"][-1] == len(arrays["segment_terms"]),
        np.array_equal(np.sort(arrays["segment_rows"]), np.arange(rows)),
        _within(arrays["base_rows"], rows) and _within(arrays["segment_terms"], terms),
        _within(arrays["row_source"], len(state["source_numbers"])) and np.all(arrays["document_frequency"] >= 0),
        len(set(state["sources"])) == segments,
    ]
    if not all(checks):
        raise ValueError(f"arrays that do not agree (check {[bool(c) for c in checks].index(False)} failed)")
    return state


def _within(values: np.ndarray, bound: int) -> bool:
    return not len(values) or (int(values.min()) >= 0 and int(values.max()) < bound)


def _segment_path(directory: Path, source: str) -> Path:
    return directory / "segments" / f"{hashlib.sha256(source.encode()).hexdigest()[:40]}.json"


def _write_segment(directory: Path, source: str, key: str, ids: Sequence[str], counts: Sequence[Counter]) -> Path:
    """One document's terms and frequencies, written aside and then swapped in (a reader never sees half)."""
    terms = list(dict.fromkeys(term for count in counts for term in count))
    number = {term: i for i, term in enumerate(terms)}
    chunks = [[[number[t] for t in count], list(count.values())] for count in counts]
    path = _segment_path(directory, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    body = {"source": source, "key": key, "ids": list(ids), "terms": terms, "chunks": chunks}
    staging.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    os.replace(staging, path)
    return path


def _read_segment(path: Path) -> tuple[str, str, list[str], list[Counter[str]]]:
    """A document file's contents, or ValueError if anything in it is not what `_write_segment` writes."""
    body = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(body, dict):
        raise ValueError(f"holds a {type(body).__name__}, not an object")
    source, key, ids, terms, chunks = (body.get(name) for name in ("source", "key", "ids", "terms", "chunks"))
    if not (isinstance(source, str) and isinstance(key, str) and _strings(ids) and _strings(terms)):
        raise ValueError("lacks source, key, ids or terms, or one has the wrong type")
    if path != _segment_path(path.parent.parent, source):
        raise ValueError(f"holds {source!r}, whose file it is not")
    if not isinstance(chunks, list) or len(chunks) != len(ids):
        raise ValueError(f"has {len(ids)} ids but chunks for {len(chunks) if isinstance(chunks, list) else 0}")
    counts = []
    for chunk in chunks:
        if not (isinstance(chunk, list) and len(chunk) == 2 and _integers(chunk[0]) and _integers(chunk[1])):
            raise ValueError("a chunk is not [term numbers, frequencies]")
        numbers, frequencies = chunk
        if len(numbers) != len(frequencies) or not numbers or len(set(numbers)) != len(numbers):
            raise ValueError("a chunk's term numbers and frequencies differ in length, repeat or are none")
        if min(numbers) < 0 or max(numbers) >= len(terms) or min(frequencies) < 1:
            raise ValueError("a term number out of range or a frequency below 1")
        counts.append(Counter({terms[n]: f for n, f in zip(numbers, frequencies, strict=True)}))
    return source, key, ids, counts


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _integers(value: object) -> bool:
    return isinstance(value, list) and all(type(item) is int for item in value)


def _retire_whole_index_files(directory: Path) -> None:
    """Remove the files of the index this one replaces (one bm25s matrix for the whole corpus), if present."""
    for name in ("bm25", "meta.json"):
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)


def entries_of(chunks: Iterable) -> list[LexicalEntry]:
    """What BM25 reads of each chunk (`index.types.Chunk`): its search text in its language."""
    return [LexicalEntry(c.id, c.search_text, c.language) for c in chunks]
