"""BM25 over the same chunks as the vector store, with one analyzer for French and English.

The index is derived data: it is rebuilt from the store's chunks by the refresh that changed them (a few
milliseconds for thousands of chunks), persisted beside the store, and tagged with the fingerprint of the
document set it was built from, so a reader can tell when another process has refreshed the store.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.language import LANGUAGES, Language, detect_language

log = logging.getLogger(__name__)

_ELISION = re.compile(r"^(?:l|d|qu|j|n|s|c|m|t|jusqu|lorsqu|puisqu)['’]", re.IGNORECASE)
_TOKEN = re.compile(r"[\w'’]+", re.UNICODE)
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


def analyze(text: str) -> list[str]:
    """Tokens for matching words in either language: elisions (l'/d'/qu'...) removed, folded, stopwords of both
    languages dropped, plural and feminine endings stemmed (`light_stem`)."""
    return [light_stem(fold(word)) for word in _words(text, STOPWORDS)]


def analyze_in(text: str, language: Language) -> list[str]:
    """Tokens for BM25 in one known language: as `analyze`, but English words go through the Snowball (Porter2)
    stemmer, so "applies" and "apply" meet. Safe because each chunk is stemmed in its own language and each query
    in the language searched: the two languages' rules never meet one text. French keeps `light_stem`: Snowball's
    French stemmer merges unrelated words ("organisme", "organe") and did not generalise (docs/evaluation.md).
    Only that language's stopwords go, so the English "AI" stays although the French "ai" (has) is one."""
    words = _words(text, _LANGUAGE_STOPWORDS[language])
    if language == "fr":
        return [light_stem(fold(word)) for word in words]
    stemmer = _english_stemmer()
    return [fold(stemmer.stemWord(word)) for word in words]


def analyze_query(text: str) -> list[str]:
    """A query's BM25 tokens when the passages it must match may be in either language: each word stemmed both
    ways (a passage holds one language's stems, so the other's rarely match it)."""
    stems = {language: analyze_in(text, language) for language in LANGUAGES}
    return list(dict.fromkeys(token for language in LANGUAGES for token in stems[language]))


def strip_elision(word: str) -> str:
    """The word without a French elided article or pronoun ("l'énergie" -> "énergie", "qu'il" -> "il")."""
    return _ELISION.sub("", word)


def _words(text: str, stopwords: frozenset[str]) -> list[str]:
    """Lowercased words, elisions removed, stopwords and single letters dropped."""
    words = []
    for raw in _TOKEN.findall(text.lower()):
        word = strip_elision(raw).strip("'’_")
        folded = fold(word)
        if not folded or folded in stopwords or (len(folded) == 1 and not folded.isdigit()):
            continue
        words.append(word)
    return words


@lru_cache(maxsize=1)
def _english_stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@dataclass(frozen=True)
class LexicalHit:
    chunk_id: str
    score: float


class LexicalIndex:
    """bm25s over analysed chunk texts; `search` never rebuilds anything."""

    def __init__(self, ids: Sequence[str], sources: Sequence[str], retriever, fingerprint: str):
        self.ids = list(ids)
        self.sources = np.array(sources, dtype=object)
        self._retriever = retriever
        self.fingerprint = fingerprint

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        sources: Sequence[str],
        texts: Sequence[str],
        fingerprint: str,
        languages: Sequence[str] | None = None,
    ):
        """`languages`: each text's, as detected at indexing (detected here when not given or empty)."""
        import bm25s

        languages = [
            given or detect_language(t) for t, given in zip(texts, languages or [""] * len(texts), strict=True)
        ]
        retriever = bm25s.BM25()
        if texts:
            # bm25s needs a non-empty vocabulary; an empty-token chunk gets a placeholder that queries never hit.
            tokens = [analyze_in(t, lang) or ["\x00"] for t, lang in zip(texts, languages, strict=True)]
            retriever.index(tokens, show_progress=False)
        return cls(ids, sources, retriever if texts else None, fingerprint)

    @classmethod
    def empty(cls) -> LexicalIndex:
        return cls([], [], None, fingerprint="")

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, k: int, sources: Sequence[str] | None = None, language: Language | None = None
    ) -> list[LexicalHit]:
        """`language`: the query's, when only passages in that language are wanted (stemmed its way only)."""
        tokens = analyze_in(query, language) if language else analyze_query(query)
        if self._retriever is None or not tokens:
            return []
        scores = np.asarray(self._retriever.get_scores(tokens), dtype=np.float32)
        if sources:
            scores = np.where(np.isin(self.sources, list(sources)), scores, 0.0)
        top = np.argsort(-scores)[:k]
        return [LexicalHit(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    # --- persistence: written aside, then swapped in -------------------------------------------
    def save(self, directory: Path) -> None:
        staging = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if self._retriever is not None:
            self._retriever.save(str(staging / "bm25"))
        meta = {"ids": self.ids, "sources": self.sources.tolist(), "fingerprint": self.fingerprint}
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        retired = directory.with_name(directory.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        if directory.exists():
            os.replace(directory, retired)
        os.replace(staging, directory)
        shutil.rmtree(retired, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        """The persisted index, or None if there is none or it is damaged in any way (a file missing, truncated
        or overwritten, metadata that does not match the matrix): the index is derived data, so the caller
        rebuilds it from the store instead of failing questions on it."""
        import bm25s

        if not directory.exists():
            return None
        try:
            ids, sources, fingerprint = _read_meta(directory / "meta.json")
            retriever = None
            if ids or (directory / "bm25").exists():  # `save` writes a matrix exactly when there are chunks
                retriever = bm25s.BM25.load(str(directory / "bm25"))
                _check_matrix(retriever, len(ids))
        except Exception as error:  # json, numpy and bm25s raise many kinds on damaged files; all mean rebuild
            log.warning("Lexical index in %s unusable, rebuilding it: %s: %s", directory, type(error).__name__, error)
            return None
        return cls(ids, sources, retriever, fingerprint)


def _read_meta(path: Path) -> tuple[list[str], list[str], str]:
    meta = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"meta.json holds a {type(meta).__name__}, not an object")
    ids, sources, fingerprint = meta.get("ids"), meta.get("sources"), meta.get("fingerprint")
    if not (_strings(ids) and _strings(sources) and isinstance(fingerprint, str)):
        raise ValueError("meta.json lacks ids, sources or fingerprint, or one has the wrong type")
    if len(ids) != len(sources):
        raise ValueError(f"meta.json has {len(ids)} ids but {len(sources)} sources")
    return ids, sources, fingerprint


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _check_matrix(retriever, documents: int) -> None:
    """Raise ValueError unless `retriever` is what `LexicalIndex.build` makes for `documents` chunks: then no
    query can index outside its arrays (an error at question time) or read scores that are not scores."""
    import bm25s

    built = bm25s.BM25()
    parameters = ("k1", "b", "delta", "method", "idf_method", "dtype", "int_dtype")
    if any(getattr(retriever, name) != getattr(built, name) for name in parameters):
        raise ValueError("BM25 parameters differ from the ones the index is built with")
    scores, vocabulary = retriever.scores, retriever.vocab_dict
    if type(scores["num_docs"]) is not int or scores["num_docs"] != documents:
        raise ValueError(f"the BM25 matrix has {scores['num_docs']!r} documents for {documents} chunk ids")
    data, indices, indptr = (np.asarray(scores[name]) for name in ("data", "indices", "indptr"))
    if not (data.ndim == indices.ndim == indptr.ndim == 1 and data.dtype.kind == "f"):
        raise ValueError("BM25 arrays of the wrong shape or type")
    if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" or not np.isfinite(data).all():
        raise ValueError("BM25 arrays of the wrong type, or scores that are not finite")
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(data) or len(indices) != len(data):
        raise ValueError("BM25 column pointers do not match the scores")
    if np.any(indptr[1:] < indptr[:-1]) or (len(indices) and (indices.min() < 0 or indices.max() >= documents)):
        raise ValueError("BM25 column pointers or document numbers out of range")
    # bm25s adds "" to the vocabulary one column past the matrix; `analyze` never yields it.
    columns = len(indptr) - 1
    if not isinstance(vocabulary, dict) or any(
        token and (type(column) is not int or not 0 <= column < columns) for token, column in vocabulary.items()
    ):
        raise ValueError("the BM25 vocabulary does not match the matrix")
