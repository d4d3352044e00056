"""The question in the corpus's other language, so retrieval can search each language in its own words.

A French question about an English text shares few words with it (BM25 finds nothing but names), and the
multilingual embeddings score a passage in the other language well below one in the question's language: on
the tuned half of our question set, the evidence of cross-language questions ranked 2.8th on average against
1.2th for same-language ones. Searching a translation of the question as well puts both languages on the same
footing. The translation only feeds retrieval; it is never shown, and the answer stays in the question's language.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from rag.language import LANGUAGE_NAMES, Language

# Fixed, whatever the target, so a local model keeps its KV cache of it from one question to the next.
TRANSLATION_PROMPT = (
    "You translate search questions between French and English. Reply with the translation only, on one line, "
    "nothing else. Keep names, numbers, acronyms and quoted words as they are."
)
# What is translated of a question: its beginning, cut between words. Retrieval reads 2,000 characters of a
# question at most, and the translation's output is bounded anyway (the local translator's 96 tokens).
MAX_TRANSLATED_CHARS = 1000
# Prefixes a small model sometimes puts before its translation.
_LABELS = ("translation:", "traduction :", "traduction:", "french:", "english:", "français :", "anglais :")


class QueryTranslator(Protocol):
    """Translates a question for retrieval; None when it cannot (retrieval then goes on without)."""

    def translate(self, text: str, target: Language) -> str | None: ...


class ChatTranslator:
    """Any LangChain chat model asked for a one-line translation; results are cached by (question, language)
    because the same question comes back (a retry, a regenerate, an evaluation rerun)."""

    def __init__(self, chat_model: BaseChatModel, cache_size: int = 512):
        self.chat_model = chat_model
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, Language], str | None] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every cached translation (benchmarks measure a cold question)."""
        with self._lock:
            self._cache.clear()

    def translate(self, text: str, target: Language) -> str | None:
        key = (text, target)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        head = text[:MAX_TRANSLATED_CHARS].rsplit(" ", 1)[0] if len(text) > MAX_TRANSLATED_CHARS else text
        messages = [
            SystemMessage(TRANSLATION_PROMPT),
            HumanMessage(f"Translate into {LANGUAGE_NAMES[target]}:\n{head}"),
        ]
        translation = clean_translation(str(self.chat_model.invoke(messages).content), text)
        with self._lock:
            self._cache[key] = translation
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return translation


def clean_translation(output: str, source: str) -> str | None:
    """The translation's first line without labels or quotes; None when the model gave nothing usable (empty,
    or the question unchanged: searching it twice would only double its weight)."""
    line = next((line.strip() for line in output.splitlines() if line.strip()), "")
    for label in _LABELS:
        if line.casefold().startswith(label):
            line = line[len(label) :].strip()
    line = line.strip("\"'«» ").strip()
    if not line or " ".join(line.casefold().split()) == " ".join(source.casefold().split()):
        return None
    return line
