"""Citations attributed and verified after generation, the same way for every generator.

A small local model puts the right facts in its answer far more often than the right `[n]`, so its
brackets are hints at most. Each answer sentence is matched against the sentences of the passages it
was given, by multilingual embeddings (which cross French and English) plus lexical overlap (which
catches names and figures); the best passage sentence above a threshold becomes the quote, and a
sentence nothing supports is flagged. Markers are renumbered 1..m by first appearance.

`CitationStreamer` applies this while tokens stream: text goes out as it comes, the model's own markers
are taken out, and each sentence's markers are sent as soon as the sentence is complete, so the streamed
text, once finished, is exactly the final answer text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from index.chunking import chunk_sentences, heading_title, split_sentences
from rag.language import CROSS_LANGUAGE_GAP, Language, detect_language
from rag.lexical import COGNATE_LETTERS, analyze, cognates, fold
from rag.names import described, grounded_names, name_pieces
from rag.schema import Citation, Passage, StreamEvent, Support, UnsupportedSentence
from rag.verification import SUPPORTED, Check, MeaningRules, Verifier, figures_bound, negated, split_yes_no

# "[1]", "[1, 2]", "[1][3]", "[Passage 2]", "[source 1]" as models write them.
_MARKER = re.compile(r"\s*\[(?:passage|source|doc(?:ument)?)?\s*(\d+(?:\s*[,;]\s*\d+)*)\]", re.IGNORECASE)
# A tail that may still grow into a marker: hold it back instead of streaming it.
_PARTIAL_MARKER = re.compile(r"\s*\[[\w\s,;]{0,12}$", re.IGNORECASE)
_REFUSAL = re.compile(
    r"(je ne sais pas|ne (le )?(disent|dit|précisent|mentionnent|contiennent|indiquent) pas|"
    r"aucune information|pas d'information|n'est pas (mentionné|indiqué|précisé)|"
    r"i don['’]t know|i do not know|(do|does) not (say|mention|contain|specify|state|provide)|"
    r"(don|doesn)['’]t (say|mention|contain|specify|state|provide)|"
    r"(is|are) not (mentioned|stated|specified|provided)|no information)",
    re.IGNORECASE,
)
# One document's silence, in the singular ("Le document 1 ne mentionne pas …"): a refusal only where a document is
# named, since "le modèle ne contient pas de données personnelles" is a claim about the world.
_ONE_DOCUMENT_SILENT = re.compile(
    r"\bne (le |la |les )?(précise|mentionne|contient|indique|donne|évoque) pas|\bn['’](indique|évoque) pas",
    re.IGNORECASE,
)


# A reporting frame ("According to the article, ...", "Le passage 2 indique que ...") says where a claim comes
# from, not what it claims: it is left out when the claim is compared with the passages (its words and numbers
# would only blur the comparison).
_DOCUMENT_KINDS = r"article|passage|document|text|texte|extrait|source"  # what a model calls what it was shown
_DOCUMENT_NOUN = (
    r"(?:the |this |these |le |la |les |l['’]|ce |cet |cette |ces )?(?:\w+ )?"  # "the French article"
    rf"(?:{_DOCUMENT_KINDS})s?(?:\s+\d+(?:\s*(?:,|and|et)\s*\d+)*)?"
)
_REPORTING_VERB = (
    r"(?:states?|says?|mentions?|indicates?|explains?|shows?|notes?|reports?|"
    r"indiquent|indique|affirment|affirme|expliquent|explique|précisent|précise|disent|dit|montrent|montre|"
    r"mentionnent|mentionne|soulignent|souligne|citent|cite)"
)
_REPORTING_FRAME = re.compile(
    rf"^\s*(?:(?:according to|as stated in|selon|d['’]après) {_DOCUMENT_NOUN}\s*,?\s*|"
    rf"{_DOCUMENT_NOUN}\s+{_REPORTING_VERB}\s+(?:that\s+|que\s+|qu['’])?)",
    re.IGNORECASE,
)


# Words about the documents and their wording, not about what they say ("which expression does the article use
# to describe..."): they are not claims a passage has to contain.
_FRAME_WORDS = frozenset(
    analyze(
        "article articles passage document texte text extrait source auteur author expression terme term mot word "
        "phrase décrire describe dire say mentionner mention selon according"
    )
)


def claim_of(sentence: str) -> str:
    """The sentence without a leading reporting frame (unchanged when it has none or is only a frame); after a
    leading yes/no too ("Oui, le document 1 affirme que …")."""
    answer, rest = split_yes_no(sentence)
    if answer:
        stated = claim_of(rest)
        return sentence[: len(sentence) - len(rest)] + stated if stated != rest else sentence
    claim = _REPORTING_FRAME.sub("", sentence, count=1)
    return claim[:1].upper() + claim[1:] if claim.strip() else sentence


# "document 1", "le passage 2", "source 3": the prompt's numbering, which the model often cites in its text. They
# are positions, not figures a passage has to state.
_PROMPT_REFERENCE = re.compile(
    r"\b(?:documents?|passages?|sources?|extraits?|excerpts?)\s+\d+(?:\s*(?:,|and|et)\s*\d+)*", re.IGNORECASE
)


class SentenceEncoder(Protocol):
    def encode(self, texts: list[str], kind: str) -> np.ndarray: ...


@dataclass(frozen=True)
class AttributionConfig:
    # Combined score a passage sentence needs to support an answer sentence. Measured with e5-small: claims
    # restated from a passage score 0.81-0.95 (across French/English too), unrelated or contradicting claims
    # on the same topic 0.70-0.76. Across languages the same score reads words as cognates and adds back the
    # cosine the embeddings lose between languages (`_alike`), so this one threshold serves both.
    threshold: float = 0.785
    lexical_weight: float = 0.15  # share of token overlap in the combined score
    hint_bonus: float = 0.01  # the model's own bracket, when it names this passage
    second_margin: float = 0.015  # a second passage is cited too when this close to the best...
    second_adds: int = 2  # ...and it supports this many more of the answer's words (not the question's)
    min_words: int = 3  # shorter fragments are neither cited nor flagged
    echo_min_terms: int = 3  # a claim restating this many of the question's terms...
    echo_found: float = 0.5  # ...needs this share of them in a same-language passage that supports it


@dataclass
class PassageSentences:
    """A passage cut into sentences, with their vectors ("passage" prompt) and analysed tokens: computed once
    per answer and shared by excerpt selection, the extractive generator and attribution."""

    passage: Passage
    spans: list[tuple[int, int]]  # offsets inside passage.text
    vectors: np.ndarray
    tokens: list[set[str]]
    # sentence index -> the clauses of that (long) sentence, with their vectors; filled on demand
    clauses: dict[int, list[tuple[tuple[int, int], np.ndarray]]] = field(default_factory=dict)

    def text(self, i: int) -> str:
        start, end = self.spans[i]
        return self.passage.text[start:end]

    def is_heading(self, i: int) -> bool:
        """Whether sentence `i` is one of the passage's headings: it names a section and states nothing."""
        return heading_title(self.text(i)) in self.passage.headings

    @property
    def language(self) -> str:
        """The passage's language as detected at indexing (detected now for a passage that carries none)."""
        return self.passage.language or detect_language(self.passage.text)


def ensure_clauses(
    encoder: SentenceEncoder, sentences: Sequence[PassageSentences], wanted: Iterable[tuple[int, int]] | None = None
) -> None:
    """Clause vectors for the sentences in `wanted` ((passage, sentence) index pairs; every sentence when None)
    that do not have them yet, encoded in one batch; short sentences get none."""
    wanted = set(wanted) if wanted is not None else None
    todo = []
    for p, item in enumerate(sentences):
        for i, (start, end) in enumerate(item.spans):
            if i in item.clauses or (wanted is not None and (p, i) not in wanted):
                continue
            spans = clause_spans(item.passage.text, start, end)
            item.clauses[i] = []
            if spans:
                todo.append((item, i, spans))
    texts = [item.passage.text[a:b] for item, _, spans in todo for a, b in spans]
    vectors = iter(encoder.encode(texts, "passage")) if texts else iter(())
    for item, i, spans in todo:
        item.clauses[i] = [(span, next(vectors)) for span in spans]


StoredSentences = list[tuple[int, int, Sequence[float]]]  # (start, end) in the passage text, vector


def build_passage_sentences(
    encoder: SentenceEncoder, passages: Sequence[Passage], stored: Sequence[StoredSentences | None] | None = None
) -> list[PassageSentences]:
    """Sentence vectors from the index when it has them (no model call), else encoded now."""
    stored = stored or [None] * len(passages)
    spans_per_passage: list[list[tuple[int, int]]] = []
    known: list[dict[tuple[int, int], Sequence[float]]] = []
    for passage, found in zip(passages, stored, strict=True):
        spans_per_passage.append(chunk_sentences(passage.text, passage.headings) or [(0, len(passage.text))])
        known.append({(s, e): v for s, e, v in found or []})
    missing = [
        passage.text[s:e]
        for passage, spans, have in zip(passages, spans_per_passage, known, strict=True)
        for s, e in spans
        if (s, e) not in have
    ]
    fresh = iter(encoder.encode(missing, "passage")) if missing else iter(())
    result = []
    for passage, spans, have in zip(passages, spans_per_passage, known, strict=True):
        rows = [np.asarray(have[span], dtype=np.float32) if span in have else next(fresh) for span in spans]
        vectors = np.vstack(rows) if rows else np.zeros((0, 1), dtype=np.float32)
        tokens = [set(analyze(passage.text[s:e])) for s, e in spans]
        result.append(PassageSentences(passage, spans, vectors, tokens))
    return result


@dataclass
class SentenceAttribution:
    text: str
    supported: bool
    citations: list[tuple[int, int, int]] = field(default_factory=list)  # (passage index, span start, span end)
    supports: list[Support] = field(default_factory=list)  # one per citation
    check: Check = SUPPORTED  # the verdict, with its reason when the sentence is not supported
    # Another source that says otherwise (passage index, span start, span end), with what it says differently.
    conflict: tuple[tuple[int, int, int], Support] | None = None
    # For a "Yes, …" the passages contradict: a quote that says no to the question itself, to answer "No" with.
    denial: tuple[tuple[int, int, int], Support] | None = None


_NO_PASSAGE = Check("not_supported")
_INVENTED_FIGURE = Check("not_supported", "a figure no passage states")
_INVENTED_YEAR = Check("not_supported", "a year neither the passages nor the question state")
_OTHER_MEASURE = Check("not_supported", "a figure the passages give only for something else")
_A_QUESTION = Check("not_supported", "a question, not an answer")


# What may close a sentence after its final mark: quotes, brackets and leftover markdown emphasis.
_CLOSERS = " \t\n»\"'”’)]*_"


def is_question(sentence: str) -> bool:
    """A sentence that asks (ends with '?', before any closing quote, bracket or markdown emphasis: a FAQ page's
    "**… bien humain ?**"): it states nothing, whether a model wrote it or a FAQ heading holds it."""
    return sentence.rstrip(_CLOSERS).endswith("?")


def figure_owners(claim: str) -> list[tuple[str, dict[str, str]]]:
    """Each figure of a claim given to someone ("Mistral Large 2 has 540 billion parameters"), with the plain names
    of its clause (capitalised words of four letters or more, by their first `COGNATE_LETTERS` letters, as
    written): whose figure it is ("DeepSeek" is one; a versioned name such as "DeepSeek-V3" is `grounded_names`'
    already). Acronyms ("EU"/"UE", "AI"/"IA") are spelt otherwise in the other language, and "China"/"Chine" share
    no prefix, so a figure's names count as stated when any one of them is."""
    owned = []
    for figure, names in figures_bound(claim, as_written=True):
        plain = {
            fold(name)[:COGNATE_LETTERS]: name
            for name in names
            if name.isalpha() and len(name) >= 4 and not name.isupper()
        }
        if plain:
            owned.append((figure, plain))
    return owned


# Figures, not digits inside names: "R1", "V3", "H800" and "DeepSeek-R1" are identifiers.
_NUMBER = re.compile(r"(?<![\w.,])(?<![^\W\d_]-)\d+(?:[ \u00a0\u202f.,]\d{3})*(?:[.,]\d+)?")


_YEAR = re.compile(r"(19|20)\d\d")


# What a figure counts, read from the word right after it, so that "5,6 millions" and "$5.576M" are the same
# kind of figure and "88.5 %" and "88.5 points" are not.
_SCALES = {
    "%": "%",
    "percent": "%",
    "pour": "%",
    "million": "M",
    "millions": "M",
    "m": "M",
    "mln": "M",
    "milliard": "B",
    "milliards": "B",
    "billion": "B",
    "billions": "B",
    "bn": "B",
    "b": "B",
    "dollars": "$",
    "dollar": "$",
    "usd": "$",
    "euros": "€",
    "euro": "€",
    "eur": "€",
}
_FIGURE_KIND = re.compile(rf"({_NUMBER.pattern})\s*(%|[^\W\d_]+)?", re.IGNORECASE)


def _fold_figure(figure: str) -> str:
    """A figure without thousands separators and decimal marks ("100 000" = "100,000" = "100000")."""
    return re.sub(r"[ \u00a0\u202f.,]", "", figure)


# A quantity written in words is a figure too ("deux semaines", "four years"): a number word counts as one only
# before a unit, so that "les deux pays" (both countries) and "one of them" stay words. "One"/"un" are left out:
# they are also the article and the pronoun.
_NUMBER_WORDS = {
    **dict.fromkeys(("two", "deux"), "2"),
    **dict.fromkeys(("three", "trois"), "3"),
    **dict.fromkeys(("four", "quatre"), "4"),
    **dict.fromkeys(("five", "cinq"), "5"),
    "six": "6",
    **dict.fromkeys(("seven", "sept"), "7"),
    **dict.fromkeys(("eight", "huit"), "8"),
    **dict.fromkeys(("nine", "neuf"), "9"),
    **dict.fromkeys(("ten", "dix"), "10"),
    **dict.fromkeys(("eleven", "onze"), "11"),
    **dict.fromkeys(("twelve", "douze"), "12"),
    **dict.fromkeys(("twenty", "vingt"), "20"),
    **dict.fromkeys(("thirty", "trente"), "30"),
}
_UNITS = (
    r"seconds?|secondes?|minutes?|hours?|heures?|days?|jours?|weeks?|semaines?|months?|mois|years?|ans|annees?|"
    r"decades?|decennies?|centur(?:y|ies)|siecles?|times|fois|percent|pour\s*cent|"
    r"millions?|milliards?|billions?|trillions?"
)
_SPELLED_QUANTITY = re.compile(rf"\b({'|'.join(_NUMBER_WORDS)})\s+({_UNITS})\b")

# What a figure measures, read from the unit after it, in either language (folded): "7 jours" and "seven days"
# are one quantity, "7B" (seven billion parameters) another. The scales of `_SCALES` count as units too.
_TIME_UNITS = {
    "second": ("second", "seconds", "seconde", "secondes"),
    "minute": ("minute", "minutes"),
    "hour": ("hour", "hours", "heure", "heures"),
    "day": ("day", "days", "jour", "jours"),
    "week": ("week", "weeks", "semaine", "semaines"),
    "month": ("month", "months", "mois"),
    "year": ("year", "years", "an", "ans", "annee", "annees"),
}
_MEASURES = _SCALES | {word: unit for unit, words in _TIME_UNITS.items() for word in words}


def _numbers(text: str) -> set[str]:
    """Figures in a text, folded, the quantities written in words included."""
    spelled = {_NUMBER_WORDS[word] for word, _ in _SPELLED_QUANTITY.findall(fold(text))}
    return {_fold_figure(match) for match in _NUMBER.findall(text)} | spelled


def _years(text: str) -> set[str]:
    """The years of a text: four digits written alone ("2024"); "2,029" (an Elo rating) is a figure."""
    return {match for match in _NUMBER.findall(text) if _YEAR.fullmatch(match)}


def _figure_kinds(text: str) -> dict[str, str]:
    """Figures of a text (folded) that say what they count (a scale, a currency, a percentage: `_SCALES`), with
    that kind; years left out. Two figures of one kind with different values are two sources disagreeing."""
    years, scales = _years(text), set(_SCALES.values())
    return {
        figure: kind
        for figure, measures in _figure_measures(text).items()
        if figure not in years
        for kind in sorted(measures - {None})
        if kind in scales
    }


def _figure_measures(text: str) -> dict[str, set[str | None]]:
    """Each figure of a text (folded, spelled quantities included) with what each of its occurrences measures
    (`_MEASURES`; None where no unit is read after it: "7 à 10 jours", "Table 7")."""
    folded = fold(text)
    measures: dict[str, set[str | None]] = {}
    for value, word in _FIGURE_KIND.findall(folded):
        measures.setdefault(_fold_figure(value), set()).add(_MEASURES.get(word))
    for word, unit in _SPELLED_QUANTITY.findall(folded):
        measures.setdefault(_NUMBER_WORDS[word], set()).add(_MEASURES.get(unit.split()[0]))
    return measures


def _display_number(text: str, folded: str) -> str:
    """The figure as `text` writes it ("5,576"), from its folded form ("5576")."""
    return next((m.group(0) for m in _NUMBER.finditer(text) if _fold_figure(m.group(0)) == folded), folded)


def strip_markers(text: str) -> tuple[str, set[int]]:
    """The text without the model's brackets, and the passage numbers they named."""
    hinted = {int(n) for match in _MARKER.finditer(text) for n in re.findall(r"\d+", match.group(1))}
    return _MARKER.sub("", text), hinted


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


_DOCUMENTS = re.compile(rf"\b(?:{_DOCUMENT_KINDS}|excerpt)s?\b", re.IGNORECASE)


def says_documents_are_silent(sentence: str) -> bool:
    """A sentence about what the documents do not say ("No, the passages do not say that X", "Les documents ne
    contiennent pas la réponse"): the model's refusal, never a claim about the world, even when X reads like a
    passage (a negative claim about the world, "the regulation does not provide for it", names no document)."""
    silent = is_refusal(sentence) or bool(_ONE_DOCUMENT_SILENT.search(sentence))
    return silent and bool(_DOCUMENTS.search(sentence))


def bare_yes_no(sentence: str) -> bool:
    """A sentence that is only "Yes." / "Non." : it says nothing until the sentence after it says what."""
    answer, rest = split_yes_no(sentence)
    return answer is not None and not analyze(rest)


# Long passage sentences are also compared clause by clause: an answer often restates one clause of a
# 250-character sentence, and the whole sentence's vector dilutes it.
_CLAUSE_BREAK = re.compile(r"\s*(?:[,;:]|\s[–—-])\s+")
_LONG_SENTENCE = 160  # characters
_MIN_CLAUSE = 40


def clause_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Clauses of a long sentence (offsets in `text`); nothing for a short one. Short pieces join the next."""
    if end - start < _LONG_SENTENCE:
        return []
    spans, piece_start = [], start
    for match in _CLAUSE_BREAK.finditer(text, start, end):
        if match.start() - piece_start >= _MIN_CLAUSE:
            spans.append((piece_start, match.start()))
            piece_start = match.end()
    if spans and end - piece_start < _MIN_CLAUSE:
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((piece_start, end))
    return spans if len(spans) > 1 else []


@dataclass
class _Units:
    """What an answer sentence is compared with in one passage: its sentences and the clauses of the long ones."""

    sentence_of: list[int]  # unit -> index of its sentence in the passage
    spans: list[tuple[int, int]]  # unit -> its offsets in the passage text (the sentence, or one of its clauses)
    vectors: np.ndarray
    tokens: list[set[str]]
    cross_language: bool
    passage_tokens: set[str]
    cognates: list[set[str]]  # unit -> its tokens as compared across languages (filled for the other language only)


_Candidate = tuple[float, float, int, int]  # (ranking score, score, passage index, unit index)


class Attributor:
    """Matches answer sentences to passage sentences; one instance per answer. `sentences` come in the order
    the generator was shown them, so a model's own `[n]` names the n-th.

    The comparison score (embeddings + word overlap; across languages, cognate overlap and the cosine with the
    gap e5 puts between languages added back, see CROSS_LANGUAGE_GAP) decides whether a sentence is supported at
    all. Among the passages that support it, the one cited is the best, and a second one is cited only
    for words it adds that are not already in the question. Each candidate quote is read by the `verifier`
    before it is cited: a quote that says the opposite (negation, a figure given to another name) supports
    nothing, and a sentence only such quotes match is contradicted."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        sentences: Sequence[PassageSentences],
        config: AttributionConfig | None = None,
        *,
        question: str = "",
        language: Language | None = None,
        verifier: Verifier | None = None,
    ):
        self.config = config or AttributionConfig()
        self.verifier = verifier or MeaningRules()
        self._question = question
        self._encoder = encoder
        self._sentences = list(sentences)
        self._question_tokens = set(analyze(question))
        self._language = language
        self._units: list[_Units] | None = None  # built at the first sentence, not before the first token
        self.passages = [item.passage for item in self._sentences]
        # A section heading states which article or section a passage is ("Article 49 – Derogations …"), which the
        # text under it does not repeat: "Article 49(1) does not apply to …" rests on that text.
        self._passage_numbers = [_numbers(p.text) | _numbers(p.heading_path) for p in self.passages]
        self._context_numbers = set().union(*self._passage_numbers)
        self._context_measures: dict[str, set[str | None]] = {}
        for passage in self.passages:
            for figure, measures in _figure_measures(passage.text).items():
                self._context_measures.setdefault(figure, set()).update(measures)
        self._known_years = self._context_numbers | _numbers(question)  # a year stated somewhere, not invented
        # What each passage names, with where it comes from (a report's title names the model its text calls "we").
        texts = [described(p.text, p.title, p.heading_path, p.source) for p in self.passages]
        self._passage_names = [name_pieces(text) for text in texts]
        self._passage_folded = [fold(text) for text in texts]

    @classmethod
    def for_passages(cls, encoder: SentenceEncoder, passages: Sequence[Passage], config=None) -> Attributor:
        return cls(encoder, build_passage_sentences(encoder, passages), config)

    def _comparison_units(self) -> list[_Units]:
        if self._units is None:
            ensure_clauses(self._encoder, self._sentences)
            self._units = []
            for item in self._sentences:
                found = [(i, span, vector) for i, clauses in sorted(item.clauses.items()) for span, vector in clauses]
                tokens = [*item.tokens, *(set(analyze(item.passage.text[a:b])) for _, (a, b), _ in found)]
                cross_language = self._language is not None and item.language != self._language
                self._units.append(
                    _Units(
                        sentence_of=[*range(len(item.spans)), *(i for i, _, _ in found)],
                        spans=[*item.spans, *(span for _, span, _ in found)],
                        vectors=np.vstack([item.vectors, *(v for _, _, v in found)]) if found else item.vectors,
                        tokens=tokens,
                        cross_language=cross_language,
                        passage_tokens=set().union(*item.tokens),
                        cognates=[cognates(t) for t in tokens] if cross_language else [],
                    )
                )
        return self._units

    def attribute(self, sentence: str, hinted: set[int] = frozenset()) -> SentenceAttribution:
        """Which passages (and which of their sentences) support `sentence`: figures and years must come from the
        passages, then the passage sentences alike enough are checked for meaning by the verifier, best first."""
        claim = claim_of(sentence)
        words = analyze(claim)
        if len(claim.split()) < self.config.min_words or not words or not self._sentences:
            return SentenceAttribution(sentence, supported=True)
        if is_question(sentence):
            # A question states nothing a passage could support ("Oui, suffit-il d'optimiser … ?" echoes the user's).
            return SentenceAttribution(sentence, supported=False, check=_A_QUESTION)
        checked = _PROMPT_REFERENCE.sub(" ", claim)  # what the figure rules and the verifier read
        numbers = _numbers(checked)
        figures = numbers - _years(checked)
        invented = self._invented_number(numbers, figures) or self._other_measure(checked, figures)
        invented = invented or self._unowned_figure(checked)
        if invented is not None:
            return SentenceAttribution(sentence, supported=False, check=invented)
        answer_tokens = set(words)
        scored, other_figures, unnamed = self._alike(claim, checked, figures, answer_tokens, hinted)
        supporting, contradicting = self._verified(checked, scored)
        if not supporting:
            if contradicting:
                check = contradicting[0][1]
            elif unnamed:
                check = Check("not_supported", f"no passage speaks of {', '.join(sorted(unnamed))}")
            else:
                check = _NO_PASSAGE
            denial = self._denial(checked, contradicting)
            return SentenceAttribution(sentence, supported=False, check=check, denial=denial)
        chosen = self._chosen(supporting, answer_tokens)
        citations = [self._quote_key(index, unit) for _, _, index, unit in chosen]
        quoted = " ".join(self.passages[index].text[start:end] for index, start, end in citations)
        missing = sorted(figures - _numbers(quoted))
        supports = [
            Support(verdict="partly" if missing else "supported", score=round(score, 3), missing=missing)
            for _, score, _, _ in chosen
        ]
        conflict = self._conflict(claim, chosen, contradicting, other_figures)
        return SentenceAttribution(sentence, True, citations, supports, conflict=conflict)

    def _invented_number(self, numbers: set[str], figures: set[str]) -> Check | None:
        """Why the claim's numbers cannot be the passages', if they cannot."""
        if not figures <= self._context_numbers:
            # A figure none of the passages states is invented, however close the wording.
            return _INVENTED_FIGURE
        if not numbers - figures <= self._known_years:
            # A year may come from another passage than the one cited (dating a passage's event from another
            # passage is the model's most common inference), but not from nowhere.
            return _INVENTED_YEAR
        return None

    def _unowned_figure(self, checked: str) -> Check | None:
        """A figure the claim gives to someone that no passage gives with that someone named: "Mistral Large 2
        has 540 billion parameters" beside a passage on Mistral Large 2 and another on "un modèle de 540 milliards
        de paramètres en 2022", which never names Mistral. (Names are read in the passage's text, title,
        headings and file name: a report's "we" is its title's model.)"""
        for figure, names in figure_owners(checked):
            stated = _numbers(figure)
            named = [re.compile(rf"\b{re.escape(name)}") for name in names]
            if not any(
                stated <= numbers and any(pattern.search(folded) for pattern in named)
                for numbers, folded in zip(self._passage_numbers, self._passage_folded, strict=True)
            ):
                return Check("not_supported", f"no passage gives {figure} for {', '.join(sorted(names.values()))}")
        return None

    def _other_measure(self, checked: str, figures: set[str]) -> Check | None:
        """A figure the claim gives with a unit ("7 jours") that the passages state only with other units ("7B",
        seven billion parameters): the same digits, another quantity. A passage stating the figure with no unit
        after it ("de 7 à 10 jours") lets it through: the unit may be further on."""
        for figure, measures in _figure_measures(checked).items():
            claimed = measures - {None}
            stated = self._context_measures.get(figure, set())
            if figure in figures and claimed and None not in stated and not claimed <= stated:
                return _OTHER_MEASURE
        return None

    def _alike(
        self, claim: str, checked: str, figures: set[str], answer_tokens: set[str], hinted: set[int]
    ) -> tuple[list[_Candidate], list[_Candidate], set[str]]:
        """Each passage's best sentence (or clause) alike enough to the claim: those to verify, those alike but in
        a passage that does not state the claim's figures, and the claim's names that alike passages lack."""
        config = self.config
        names = grounded_names(checked, self._question)
        # A figure is cited to a passage that states it, when one does: "2.788M GPU hours" is not supported by
        # a sentence on "2.664M GPU hours", however alike the two read to the embeddings.
        stating = {i for i, numbers in enumerate(self._passage_numbers) if figures <= numbers} if figures else set()
        # Both sides as passages: a claim and the sentence that states it are alike, not question and answer.
        # A leading "Yes,"/"Non," is no content a passage states (the verifier checks it against the question).
        _, stated = split_yes_no(claim)
        vector = self._encoder.encode([stated if len(stated.split()) >= config.min_words else claim], "passage")[0]
        # The question's own terms, restated in the claim, must be in the passage too (same language: across
        # languages words cannot be compared): "the intelligence law obliges DeepSeek to cooperate with the
        # State" reads close to a passage on DeepSeek obeying Chinese security laws, yet only the question
        # spoke of an intelligence law.
        echoed = (answer_tokens & self._question_tokens) - _FRAME_WORDS
        echo_checked = len(echoed) >= config.echo_min_terms
        answer_cognates = cognates(answer_tokens)
        scored: list[_Candidate] = []
        other_figures: list[_Candidate] = []  # alike, in a passage that does not state the claim's figures
        unnamed: set[str] = set()  # names of the claim that a passage it reads like does not state
        for index, units in enumerate(self._comparison_units()):
            lacks_echo = echo_checked and not units.cross_language
            lacks_echo = lacks_echo and len(echoed & units.passage_tokens) < config.echo_found * len(echoed)
            if lacks_echo:
                continue
            similarity = units.vectors @ vector
            if units.cross_language:
                # A translation shares few words with its original, but many cognates ("régulation"/"regulation"),
                # and e5 scores it below a restatement by about CROSS_LANGUAGE_GAP: compared so, one threshold
                # reads both languages (docs/evaluation.md: more true cross-language pairs pass, fewer wrong ones).
                similarity = similarity + CROSS_LANGUAGE_GAP
                overlap = np.array([len(answer_cognates & c) / len(answer_cognates) for c in units.cognates])
            else:
                overlap = np.array([len(answer_tokens & t) / len(answer_tokens) for t in units.tokens])
            combined = (1 - config.lexical_weight) * similarity + config.lexical_weight * overlap
            if index + 1 in hinted:  # the model's numbers are positions in the prompt
                combined = combined + config.hint_bonus
            passes = combined >= config.threshold
            if not passes.any():
                continue
            missing_names = names.keys() - self._passage_names[index]
            if missing_names:
                # "The leasing cost of an H100 is $2 an hour" is not what a passage on the H800 says, however
                # alike the two read.
                unnamed |= {names[name] for name in missing_names}
                continue
            best = int(np.argmax(np.where(passes, combined, -np.inf)))
            # Ranked with the gap added back (as before); the score shown leaves it out.
            gap = (1 - config.lexical_weight) * CROSS_LANGUAGE_GAP if units.cross_language else 0.0
            candidate = (float(combined[best]), float(combined[best]) - gap, index, best)
            (other_figures if stating and index not in stating else scored).append(candidate)
        return scored, other_figures, unnamed

    def _verified(
        self, checked: str, scored: list[_Candidate]
    ) -> tuple[list[_Candidate], list[tuple[_Candidate, Check]]]:
        """The alike candidates the verifier lets support the claim, best first, and those it finds contradict it."""
        supporting, contradicting = [], []
        for candidate in sorted(scored, reverse=True):
            check = self.verifier.verify(checked, self._unit_text(candidate), question=self._question)
            if check.verdict == "contradicted":
                contradicting.append((candidate, check))
            else:
                supporting.append(candidate)
        return supporting, contradicting

    def _denial(
        self, checked: str, contradicting: list[tuple[_Candidate, Check]]
    ) -> tuple[tuple[int, int, int], Support] | None:
        """For a claim that says yes: the best contradicting quote that the verifier finds says no to the question
        itself ("Est-ce que R1 consomme davantage d'énergie ?" against "consommer beaucoup moins d'énergie"). The
        documents then answer the question, the other way: a refusal would say they are silent, which is false.
        Not for a question that is negative itself ("Sans décision d'adéquation, peut-il …?"): there a bare "No"
        reads both ways, and which words its negation covers is the rules' least sure reading."""
        if split_yes_no(checked)[0] != "yes" or negated(self._question):
            return None
        for candidate, check in contradicting:
            asked = self.verifier.verify(self._question, self._unit_text(candidate), question=self._question)
            if asked.verdict == "contradicted":
                _, score, index, unit = candidate
                support = Support(verdict="supported", score=round(score, 3), reason=check.reason)
                return self._quote_key(index, unit), support
        return None

    def _chosen(self, supporting: list[_Candidate], answer_tokens: set[str]) -> list[_Candidate]:
        """The best support, and a second one only for what it adds: two passages stating the same fact would
        make one of them a citation the reader checks for nothing. The question's own words add nothing."""
        config = self.config
        chosen = supporting[:1]
        if len(supporting) > 1 and supporting[1][0] >= supporting[0][0] - config.second_margin:
            first, second = (self._units[i].tokens[u] for _, _, i, u in supporting[:2])
            if len((answer_tokens - self._question_tokens) & (second - first)) >= config.second_adds:
                chosen.append(supporting[1])
        return chosen

    def _quote_key(self, index: int, unit: int) -> tuple[int, int, int]:
        """What a citation quotes for a compared unit: the whole passage sentence it is (or is a clause of)."""
        start, end = self._sentences[index].spans[self._units[index].sentence_of[unit]]
        return index, start, end

    def _unit_text(self, candidate: _Candidate) -> str:
        _, _, index, unit = candidate
        start, end = self._units[index].spans[unit]
        return self.passages[index].text[start:end]

    def _conflict(
        self,
        claim: str,
        chosen: list[_Candidate],
        contradicting: list[tuple[_Candidate, Check]],
        other_figures: list[_Candidate],
    ) -> tuple[tuple[int, int, int], Support] | None:
        """Another document that says otherwise about what the claim states: a quote alike enough that the verifier
        finds disagrees with it (`Check.disagrees`: not one that uses the figure for another measure or adds a
        condition, which speaks of something else), or that gives the same kind of figure with another value
        ("5,6 millions de dollars" for R1 in one document, "$5.576M" for V3 in another). Within the cited
        document, two sentences are read as one text, not as two sources."""
        cited_sources = {self.passages[index].source for _, _, index, _ in chosen}
        claim_kinds = _figure_kinds(claim)
        found: list[tuple[_Candidate, str]] = [(c, check.reason) for c, check in contradicting if check.disagrees]
        for candidate in sorted(other_figures, reverse=True):
            quote = self._unit_text(candidate)
            theirs = _figure_kinds(quote)
            differing = [value for value, kind in theirs.items() if kind in claim_kinds.values()]
            if differing and not set(claim_kinds) & set(theirs):
                found.append((candidate, f"gives {_display_number(quote, differing[0])}"))
        for (_, score, index, unit), reason in found:
            if self.passages[index].source in cited_sources:
                continue
            return self._quote_key(index, unit), Support(verdict="differs", score=round(score, 3), reason=reason)
        return None


class CitationNumbering:
    """Numbers (passage, quote) pairs 1..m in order of first appearance in the answer."""

    def __init__(self, passages: Sequence[Passage]):
        self.passages = list(passages)
        self._numbers: dict[tuple[int, int, int], int] = {}
        self.citations: list[Citation] = []

    def number(self, key: tuple[int, int, int], support: Support | None = None) -> tuple[int, Citation | None]:
        """The marker number for `key`, and the new Citation if this is its first appearance (carrying the
        support of the sentence it is first cited for)."""
        if key in self._numbers:
            return self._numbers[key], None
        index, start, end = key
        passage = self.passages[index]
        n = len(self._numbers) + 1
        self._numbers[key] = n
        citation = Citation(
            n=n,
            source=passage.source,
            title=passage.title,
            page=passage.page,
            chunk_id=passage.chunk_id,
            start=passage.start,
            end=passage.end,
            text=passage.text,
            quote=passage.text[start:end],
            quote_start=passage.start + start,
            quote_end=passage.start + end,
            support=support or Support(),
        )
        self.citations.append(citation)
        return n, citation


@dataclass
class CitedAnswer:
    text: str
    citations: list[Citation]
    unsupported: list[UnsupportedSentence]
    refused: bool


class CitationStreamer:
    """Feed model tokens in, get honest stream events out; `result()` gives the final cited answer.

    With `drop_unsupported` (the default, `RAG_DROP_UNSUPPORTED=true`), a sentence goes out only once verified,
    whole, with its citation marks: an unsupported one is withheld and kept in `unsupported`, and the model's own "the
    documents don't say" is dropped once any claim is verified, so an answer never states something and then
    denies it. A first claim that says yes where a passage says no to the question becomes that "No", in the
    passage's words (`denial`). Without it, everything streams as written and unsupported sentences are only
    flagged."""

    def __init__(
        self,
        attributor: Attributor,
        *,
        refusal: str,
        drop_unsupported: bool = False,
        conflict_note: str = "",
        denial: str = "",
    ):
        self.attributor = attributor
        self.refusal = refusal  # said at the end when no sentence of the answer is supported
        self.conflict_note = conflict_note  # said after a sentence another source contradicts (and cited to it)
        # With `drop_unsupported`: the answer given, with the quote ("No: the documents say “{quote}”"), when the
        # first claim says yes and a quote says no to the question (see `Attributor._denial`).
        self.denial = denial
        self.drop_unsupported = drop_unsupported
        self.numbering = CitationNumbering(attributor.passages)
        self._raw = ""  # model text received so far
        self._done_upto = 0  # end (in cleaned text) of the sentences already attributed
        self._emitted_upto = 0  # end (in cleaned text) of what has been streamed
        self._output: list[str] = []
        self._unsupported: list[UnsupportedSentence] = []
        self._any_supported = False
        self._pending_yes_no = ""  # a bare "Yes." held back until the sentence after it is verified
        self._held = ""  # fragments too short to verify ("C'est vrai."), sent before the next verified sentence

    def feed(self, token: str) -> Iterator[StreamEvent]:
        self._raw += token
        yield from self._advance(final=False)

    def finish(self) -> Iterator[StreamEvent]:
        yield from self._advance(final=True)
        if self._held and self._any_supported:  # short fragments after the last verified sentence
            yield self._emit(self._held)
        self._held = ""
        text = "".join(self._output)
        if not self._any_supported and not is_refusal(text):
            # Nothing the model said is backed by a passage: say plainly that the documents don't say.
            yield self._emit(f" {self.refusal}" if text.strip() else self.refusal)

    def result(self) -> CitedAnswer:
        text = "".join(self._output)
        refused = not self._any_supported
        citations = [] if refused else self.numbering.citations
        # Withheld sentences stay listed even when the answer is refused: the reader may see what was held back.
        unsupported = self._unsupported if self.drop_unsupported or not refused else []
        return CitedAnswer(text, citations, unsupported, refused)

    # --- internals ----------------------------------------------------------------------------------
    def _clean(self, final: bool) -> tuple[str, set[int]]:
        raw = self._raw
        if not final:
            partial = _PARTIAL_MARKER.search(raw)
            if partial:
                raw = raw[: partial.start()]
        return strip_markers(raw)

    def _advance(self, final: bool) -> Iterator[StreamEvent]:
        cleaned, _ = self._clean(final)
        # Never stream leading whitespace: the streamed text must equal the final answer text.
        self._emitted_upto = max(self._emitted_upto, len(cleaned) - len(cleaned.lstrip()))
        spans = split_sentences(cleaned)
        # All sentences but the last are complete; at the end, the last one is too.
        complete = spans if final else spans[:-1]
        for start, end in complete:
            if end <= self._done_upto:
                continue
            yield from self._close_sentence(cleaned, start, end)
        if not final and not self.drop_unsupported and spans:
            # Stream the sentence in progress, holding back trailing whitespace (markers may follow it).
            tail_end = len(cleaned.rstrip())
            if tail_end > self._emitted_upto:
                yield self._emit(cleaned[self._emitted_upto : tail_end])
                self._emitted_upto = tail_end

    def _close_sentence(self, cleaned: str, start: int, end: int) -> Iterator[StreamEvent]:
        sentence = cleaned[start:end]
        _, hinted = strip_markers(self._raw_segment_for(sentence))
        self._done_upto = end
        separator = cleaned[self._emitted_upto : start] if self._emitted_upto < start else ""
        if self.drop_unsupported:
            # Only verified text goes out: the model's "the passages do not say" is no claim and never shown once
            # it has said something, and a bare "Yes." goes out with the sentence that says what, or not at all.
            pending, self._pending_yes_no = self._pending_yes_no, ""
            bare = bare_yes_no(sentence)
            if bare or says_documents_are_silent(sentence):
                self._pending_yes_no = sentence if bare else ""
                self._emitted_upto = end
                return
            if pending:
                separator, sentence = separator or " ", f"{pending} {sentence}"
        attribution = self.attributor.attribute(sentence, hinted)
        if self.drop_unsupported and attribution.supported and not attribution.citations:
            # Too short to verify: it goes out with verified text, never alone and never before a refusal.
            self._held += (separator if self._output or self._held else "") + sentence
            self._emitted_upto = end
            return
        if not attribution.supported:
            withheld = UnsupportedSentence(
                text=sentence, verdict=attribution.check.verdict, reason=attribution.check.reason
            )
            if self.drop_unsupported:
                if not is_refusal(sentence):  # "the documents don't say" is no claim to list
                    self._unsupported.append(withheld)
                self._emitted_upto = end
                if attribution.denial and self.denial and not self._any_supported:
                    yield from self._deny(separator, *attribution.denial)
                return
            self._unsupported.append(withheld)
        if self.drop_unsupported:
            # Nothing of this sentence went out yet: send it whole, with the separator before it (and the short
            # fragments held before it).
            yield self._release(separator, sentence)
        elif end > self._emitted_upto:
            yield self._emit(cleaned[self._emitted_upto : end])
        self._emitted_upto = end
        if attribution.citations:
            self._any_supported = True
            numbers, new = [], []
            for key, support in zip(attribution.citations, attribution.supports, strict=True):
                n, citation = self.numbering.number(key, support)
                if n not in numbers:
                    numbers.append(n)
                if citation:
                    new.append(citation)
            if attribution.conflict and self.conflict_note:
                n, citation = self.numbering.number(*attribution.conflict)
                yield self._emit(" " + "".join(f"[{n}]" for n in numbers) + f" {self.conflict_note} [{n}].")
                new += [citation] if citation else []
            else:
                yield self._emit(" " + "".join(f"[{n}]" for n in numbers))
            yield StreamEvent(type="citations", citations=new)

    def _deny(self, separator: str, key: tuple[int, int, int], support: Support) -> Iterator[StreamEvent]:
        """Answer no with the quote that says so, cited to it, in place of the withheld yes."""
        index, start, end = key
        quote = self.attributor.passages[index].text[start:end].strip()
        n, citation = self.numbering.number(key, support)
        yield self._release(separator, self.denial.format(quote=quote) + f" [{n}]")
        yield StreamEvent(type="citations", citations=[citation] if citation else [])
        self._any_supported = True

    def _release(self, separator: str, text: str) -> StreamEvent:
        """Send verified text whole, after the short fragments held for it and the separator before it."""
        prefix = separator if self._output or self._held else ""
        held, self._held = self._held, ""
        return self._emit(held + prefix + text)

    def _raw_segment_for(self, sentence: str) -> str:
        """The raw model text around a sentence, to read the brackets the model put after it."""
        index = self._raw.find(sentence[: min(len(sentence), 40)])
        if index < 0:
            return ""
        following = _MARKER.match(self._raw, index + len(sentence))
        return self._raw[index : following.end() if following else index + len(sentence)]

    def _emit(self, text: str) -> StreamEvent:
        self._output.append(text)
        return StreamEvent(type="token", text=text)


def attribute_answer(
    attributor: Attributor, text: str, *, refusal: str, drop_unsupported: bool = False
) -> tuple[CitedAnswer, list[StreamEvent]]:
    """Non-streaming use: the whole answer at once (same code path as streaming)."""
    streamer = CitationStreamer(attributor, refusal=refusal, drop_unsupported=drop_unsupported)
    events = list(streamer.feed(text)) + list(streamer.finish())
    return streamer.result(), events
