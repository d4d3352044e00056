"""Which of our two languages a text is in: decides the answer language and the lexical weight."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

Language = Literal["fr", "en"]
LANGUAGES: tuple[Language, ...] = ("fr", "en")
LANGUAGE_NAMES: dict[Language, str] = {"fr": "French", "en": "English"}

# The multilingual embeddings score a sentence in the other language lower than the same content in the
# question's language, so relevance and support are compared across languages after adding this much to the
# other language's cosine (chosen on the dev set's cross-language questions: 0.02-0.05 all put the evidence
# first more often than 0 does).
CROSS_LANGUAGE_GAP = 0.03


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(["fr", "en"])
    return identifier


@lru_cache(maxsize=4096)
def detect_language(text: str) -> Language:
    """'fr' or 'en'; short or mixed texts lean to English only when the classifier is confident."""
    label, _ = _identifier().classify(text[:2000])
    return "fr" if label == "fr" else "en"
