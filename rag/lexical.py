"""BM25 over the same chunks as the vector store, with one analyzer for French and English.

The index is derived data: it is rebuilt from the store's chunks by the refresh that changed them (a few
milliseconds for thousands of chunks), persisted beside the store, and tagged with the fingerprint of the
document set it was built from, so a reader can tell when another process has refreshed the store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    """Tokens for BM25: elisions (l'/d'/qu'...) removed, folded, stopwords of both languages dropped, stemmed."""
    tokens = []
    for raw in _TOKEN.findall(text):
        word = fold(_ELISION.sub("", raw)).strip("'’_")
        if not word or word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        tokens.append(light_stem(word))
    return tokens


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
    def build(cls, ids: Sequence[str], sources: Sequence[str], texts: Sequence[str], fingerprint: str):
        import bm25s

        retriever = bm25s.BM25()
        if texts:
            # bm25s needs a non-empty vocabulary; an empty-token chunk gets a placeholder that queries never hit.
            retriever.index([analyze(t) or ["\x00"] for t in texts], show_progress=False)
        return cls(ids, sources, retriever if texts else None, fingerprint)

    @classmethod
    def empty(cls) -> LexicalIndex:
        return cls([], [], None, fingerprint="")

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int, sources: Sequence[str] | None = None) -> list[LexicalHit]:
        tokens = analyze(query)
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
        """The persisted index, or None if there is none (or it is unreadable, which a refresh repairs)."""
        import bm25s

        try:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            retriever = bm25s.BM25.load(str(directory / "bm25")) if meta["ids"] else None
        except (OSError, ValueError, KeyError):
            return None
        return cls(meta["ids"], meta["sources"], retriever, meta["fingerprint"])
