"""The second look at a claim the similarity stage found support for: does the quote say the same thing?

Embeddings see the topic, not the meaning: "DeepSeek is easy to compare" and "DeepSeek est difficilement
comparable" are close, and so are "Qwen scores 88.5" and a sentence where DeepSeek scores 88.5 beside a Qwen
figure. `MeaningRules` reads what cosine cannot, in both languages, with reasons a reader can check:

- negation and hedges: the claim and the quote must agree on "not", "never", "hardly", "without" ("in the
  absence of"), "ne … pas", "difficilement", "sans" (markers of either language are read in either text, so it
  holds across languages); "not only X" denies only "only X" ("pas seulement", "non seulement");
- comparisons: "consumes more energy" and "consomme beaucoup moins d'énergie" point opposite ways;
- yes/no answers: "Yes, …" is a claim too, and must not state the opposite of what was asked;
- conditions: a plain "Yes" to a quote that allows it "only if" drops the condition;
- figures bound to their entity: a figure the quote gives to another name the claim also mentions, or to
  another measure (the claim's "price" where the quote's figure is the revenue and its price is another figure).

It judges only what it can see; anything else stays with the similarity stage's verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from rag.lexical import COGNATE_LETTERS, fold, strip_elision

# "not_supported" is the similarity stage's (no passage matched); a verifier says "supported" or "contradicted".
Verdict = Literal["supported", "contradicted", "not_supported"]


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    reason: str = ""  # what the verifier saw, in words a reader understands
    # For "contradicted": whether the quote states otherwise about the same thing (a negation, a comparison the
    # other way, another figure for the same name), so that another document saying so is a conflict of sources.
    # A quote that uses the figure for another measure, or adds a condition, is not about the same claim.
    disagrees: bool = False


SUPPORTED = Check("supported")


class Verifier(Protocol):
    """Given a claim, the quote (sentence or clause) the similarity stage matched it with, and the question,
    say whether the quote supports the claim or says otherwise, and why."""

    def verify(self, claim: str, quote: str, *, question: str) -> Check: ...


class SimilarityOnly:
    """No second stage: the similarity stage's match is the verdict (the fake for unit tests, and a baseline)."""

    def verify(self, claim: str, quote: str, *, question: str) -> Check:
        return SUPPORTED


# Markers are matched on folded text (no accents, lower case), in both languages whatever the text's language.
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nothing|nobody|neither|nor|without|cannot|unable|impossible|free of|free from|"
    r"lack|lacks|lacked|lacking|absence|absent|hardly|barely|scarcely|difficult|difficultly|hard to|"
    r"ne|n'|pas|plus|jamais|rien|aucun|aucune|aucuns|aucunes|sans|ni|faute de|a defaut de|guere|personne|"
    r"difficile|difficiles|difficilement|incapable|incapables|a peine)(?=\W|$)"
    r"|n't\b"
)
# "plus" and "personne" are negations only after "ne": "plus de 100" is "more than 100", "la personne" a person.
_NE_ONLY = frozenset({"plus", "personne"})
_NE = re.compile(r"\b(?:ne\s+|n')(?:\S+\s+){0,3}$")
# "ne … que" is "only", not "not": "il n'a que 10 ans".
_NE_QUE = re.compile(r"\b(?:ne\s+|n')(?:\S+\s+){0,3}?qu(?:e\b|')")
# "Not only X (but also Y)" states X and denies only that X is all: "L'importance de DeepSeek n'est pas seulement
# de fournir la capacité technique …, mais aussi de signaler …" supports "DeepSeek fournit la capacité technique",
# and contradicts "… seulement de fournir la capacité technique". The "ne"/"n'" before such a "pas" goes with it.
_NOT_ONLY = re.compile(
    r"\b(?:(?:ne\s+|n')(?:\S+\s+){0,3}?)?(?:pas|non)\s+(?:seulement|uniquement|simplement)\b"
    r"|(?:\bnot\s+|n't\s+)(?:only|just|merely|simply|solely)\b"
)
_ONLY = re.compile(r"\b(?:only|solely|exclusively|merely|seulement|uniquement|exclusivement)\b")
# What a negation applies to: the next few content words, compared as cognates are (their first
# `COGNATE_LETTERS` letters: "comparable"/"compare").
_SCOPE_WORDS = 3
_PREFIX = COGNATE_LETTERS
_NOT_CONTENT = frozenset(
    "avait avoir etait etre etaient sont peut peuvent pourrait pourraient doit doivent would could should "
    "might must shall been being have having does doesn't there their which where about avec dans pour entre "
    "cette celui celle leurs aussi encore toujours always still even yet".split()
)


_WORD = re.compile(r"[a-z][a-z'-]*")  # a word of folded text


def _folded(text: str) -> str:
    return fold(text).replace("’", "'")


def _content_words(words: list[str]) -> list[str]:
    """The content words, in order, read without their elision ("d'adéquation" is "adequation", and "d'une" is no
    content word)."""
    words = [strip_elision(word) for word in words]
    return [word for word in words if len(word) >= _PREFIX and word not in _NOT_CONTENT]


def _prefixes(words: list[str]) -> set[str]:
    """The content words' first letters ("d'adéquation" compares "adequ")."""
    return {word[:_PREFIX] for word in _content_words(words)}


# A negation of a denial or a doubt is a litotes that affirms what follows ("l'on ne puisse nier les aspects
# positifs", "cannot be denied", "no doubt", "sans aucun doute"): it is no negation. Read after the marker, past the
# words that only carry it (a modal, "pas", "aucun", "be").
_DENIAL_AFTER = re.compile(
    r"\s*(?:(?:pas|peut|puisse|pourrait|pouvait|peuvent|faut|doit|saurait|sauraient|aucun|aucune|"
    r"can|could|be|been|any)\s+){0,2}"
    r"(?:nier|nie|niee?s?|niant|deny|denies|denied|denying|contester|conteste|contestee?s?|dispute|disputed|"
    r"doute|doutes|douter|doubt|doubts|doubted)\b"
)
_SCOPE_END = re.compile(r"[,;:.!?]\s")  # a comma, a semicolon, a colon or a sentence end, before a space


def _scope(folded: str, end: int, words: int = _SCOPE_WORDS) -> set[str]:
    """The prefixes of the content words a marker ending at `end` applies to: the next few, within its clause."""
    after = folded[end:]
    stop = _SCOPE_END.search(after)
    following = _WORD.findall(after[: stop.start()] if stop else after)
    return _prefixes(_content_words(following)[:words])


def _negation_scopes(text: str, words: int = _SCOPE_WORDS) -> list[set[str]]:
    """For each negation or hedge in a text, the prefixes of the content words it applies to (the first `words`)."""
    folded = _NOT_ONLY.sub(" ", _folded(text))
    if _NE_QUE.search(folded) and not re.search(r"\b(?:pas|jamais|rien|aucune?|guere)\b", folded):
        folded = _NE_QUE.sub(" ", folded)
    return [
        _scope(folded, match.end(), words)
        for match in _NEGATION.finditer(folded)
        if (match.group(0) not in _NE_ONLY or _NE.search(folded[: match.start()]))
        and not _DENIAL_AFTER.match(folded, match.end())
    ]


def _restrictions(text: str, *, denied: bool) -> list[set[str]]:
    """What a text says is all there is ("seulement des fins commerciales"), or with `denied`, what it says is not
    all ("pas seulement des fins commerciales"): the scopes of its "only" markers, one kind or the other."""
    folded = _folded(text)
    if denied:
        return [_scope(folded, match.end()) for match in _NOT_ONLY.finditer(folded)]
    stated = _NOT_ONLY.sub(" ", folded)
    return [_scope(stated, match.end()) for match in _ONLY.finditer(stated)]


def negated(text: str) -> bool:
    """Whether a text states something as not so (or hardly so): a grammatical negation or a hedge."""
    return bool(_negation_scopes(text))


def opposed(negative: str, positive: str, words: int = _SCOPE_WORDS) -> bool:
    """Whether `negative` denies what `positive` affirms: it holds a negation that applies to words `positive`
    states too, and `positive` holds no negation at all. A negation elsewhere in the sentence ("…, sans aucune
    incitation") is about something else and does not count. With `words` = 1, only the first content word after
    the negation counts (the negated word itself, not its object: "n'empêchent pas l'innovation chinoise" denies
    nothing about "une entreprise chinoise")."""
    if negated(positive):
        return False
    stated = _prefixes(_WORD.findall(_folded(positive)))
    if any(scope & stated for scope in _negation_scopes(negative, words)):
        return True
    # "not only X" denies "only X", and nothing else of X
    restricted = _restrictions(positive, denied=False)
    return any(scope & theirs for scope in _restrictions(negative, denied=True) for theirs in restricted)


_RESTRICTION = re.compile(
    r"\b(?:only|solely|exclusively|unless|provided that|on condition|subject to|"
    r"seulement|uniquement|exclusivement|sauf|a condition|a moins|sous reserve)\b"
)
_CONDITION = re.compile(
    r"\b(?:only|if|unless|provided|when|where|under|subject|depending|conditions?|"
    r"si|seulement|uniquement|sauf|condition|lorsque|quand|sous|selon|dans le cadre)\b"
)
_YES_NO = re.compile(r"^\s*(yes|no|oui|non)\b\s*[,.;:!—–-]?\s*", re.IGNORECASE)

# A name the claim can bind a figure to: a word with a capital after its first letter or a digit ("MMLU",
# "DeepSeek-V3", "GPT-4o", "H800"), or a capitalised word inside the sentence ("Qwen", "Mistral").
_NAME = re.compile(r"\b[A-Za-zÀ-ÿ][\w.-]*(?:[A-Z]|\d)(?:[\w.-]*\w)?|(?<=[^.!?]\s)[A-Z][a-zà-ÿ]{2,}")
# Digits inside identifiers ("pass@1", "o1-0912", "R1") are part of a name, not a figure.
_FIGURE = re.compile(r"(?<![\w.,@-])\d+(?:[.,]\d+)?(?![\w@-])")
# Where one entity's statement ends and another's begins inside a sentence. A comma between two digits is a
# thousands separator or a decimal comma ("2,029", "88,5"), inside a figure, not between clauses.
_CLAUSE = re.compile(
    r";|(?<!\d),|,(?!\d)"
    r"|\b(?:while|whereas|but|and|against|compared to|versus|vs\.?|alors que|tandis que|mais|et|contre)\b"
)
_YEAR = re.compile(r"(?:19|20)\d\d")


def split_yes_no(claim: str) -> tuple[str | None, str]:
    """("yes" or "no", the rest) for an answer that opens with one; (None, claim) otherwise."""
    match = _YES_NO.match(claim)
    if not match:
        return None, claim
    word = match.group(1).lower()
    return ("yes" if word in ("yes", "oui") else "no"), claim[match.end() :]


def _clauses(text: str) -> list[str]:
    """The text cut where one entity's statement ends and another's begins (`_CLAUSE`)."""
    start = 0
    pieces = []
    for match in _CLAUSE.finditer(text):
        pieces.append(text[start : match.start()])
        start = match.end()
    pieces.append(text[start:])
    return pieces


def _figures(piece: str) -> list[str]:
    """A clause's figures, read alike ("88,5" is "88.5"); years date a statement rather than measure something."""
    return [figure.replace(",", ".") for figure in _FIGURE.findall(piece) if not _YEAR.fullmatch(figure)]


def figures_bound(text: str, *, as_written: bool = False) -> list[tuple[str, set[str]]]:
    """Each figure of a text with the names stated in its own clause (lower-cased, unless `as_written`)."""
    bound = []
    for piece in _clauses(text):
        names = {name if as_written else name.lower() for name in _NAME.findall(piece)}
        bound.extend((figure, names) for figure in _figures(piece))
    return bound


def _figures_measuring(text: str, *, alone: bool = False) -> list[tuple[str, set[str]]]:
    """Each figure of a text with the content words of its own clause, as they compare across languages (their
    first letters): what the figure counts or measures ("revenue", "tokens", "utilisateurs"). With `alone`, only
    figures alone in their clause: of two figures in one clause, which word measures which cannot be told."""
    bound = []
    for piece in _clauses(text):
        figures = _figures(piece)
        if figures and not (alone and len(figures) > 1):
            words = _prefixes(_WORD.findall(_folded(piece)))
            bound.extend((figure, words) for figure in figures)
    return bound


# Comparisons, by the way they point: "more energy" against "moins d'énergie". "plus"/"moins" in fixed phrases
# ("de plus" = moreover, "au moins" = at least, "à moins" = unless) compare nothing.
_MORE = frozenset(
    "more greater higher larger bigger increase increased increases davantage superieur superieure "
    "superieurs superieures plus".split()
)
_LESS = frozenset(
    "less fewer lower smaller decrease decreased decreases reduce reduced moins inferieur inferieure "
    "inferieurs inferieures".split()
)
_COMPARATIVES = _MORE | _LESS
_OPPOSITE_WAY = {"more": "less", "less": "more"}
_NOT_COMPARING = re.compile(r"\b(?:de|en|non|au|du|a|le|la|les|not|no|ne|n'|pas)\s+$")


def _comparisons(text: str) -> set[tuple[str, str]]:
    """("more" or "less", the prefix of the word compared) for each comparison of a text: the first content word
    after the marker, read without its elision ("moins d'énergie" compares "energ")."""
    folded = _folded(text)
    found = set()
    for match in _WORD.finditer(folded):
        word = match.group(0)
        direction = "more" if word in _MORE else "less" if word in _LESS else None
        if direction is None or _NOT_COMPARING.search(folded[max(0, match.start() - 8) : match.start()]):
            continue
        for following in _WORD.findall(folded[match.end() : match.end() + 60]):
            following = strip_elision(following)
            if len(following) >= _PREFIX and following not in _NOT_CONTENT and following not in _COMPARATIVES:
                found.add((direction, following[:_PREFIX]))
                break
    return found


def reversed_comparison(claim: str, other: str) -> bool:
    """Whether `other` compares a thing the claim compares, the other way, and never the claim's way."""
    theirs = _comparisons(other)
    return any((_OPPOSITE_WAY[way], word) in theirs and (way, word) not in theirs for way, word in _comparisons(claim))


_OPPOSITE = "the source says the opposite (negation)"


def _same_negation(text: str, other: str) -> bool:
    """Whether both texts deny the same thing (a negative question and the quote that answers it)."""
    theirs = _negation_scopes(other)
    return any(scope & scope_other for scope in _negation_scopes(text) for scope_other in theirs)


class MeaningRules:
    """The rule-based second stage (see the module docstring). Each rule fires only on something it can point
    at, so a true paraphrase without negations, yes/no, conditions or figures passes untouched."""

    def verify(self, claim: str, quote: str, *, question: str) -> Check:
        answer, body = split_yes_no(claim)
        if answer == "yes" and (opposed(body, question) or reversed_comparison(body, question)):
            return Check("contradicted", "the answer says yes but states the opposite of what was asked")
        # A negation contradicts when it covers any of the next few words; two sources disagree only when it
        # covers the very word the other states (`Check.disagrees`): a note that the sources differ is shown to the
        # reader, while a withheld sentence only costs an answer.
        if opposed(quote, body) and not _same_negation(quote, question):
            # (A negative question, "why did X not …?", is answered without repeating its negation.)
            return Check("contradicted", _OPPOSITE, disagrees=opposed(quote, body, words=1))
        if opposed(body, quote):
            return Check("contradicted", _OPPOSITE, disagrees=opposed(body, quote, words=1))
        if reversed_comparison(body, quote):
            return Check("contradicted", "the source compares the other way (more/less)", disagrees=True)
        if answer == "yes" and _RESTRICTION.search(_folded(quote)) and not _CONDITION.search(_folded(body)):
            return Check("contradicted", "the source allows it only under a condition the answer leaves out")
        if "|" not in quote:  # table rows bind figures by column, which a clause cannot show
            misbound = self._misbound_figure(body, quote)
            if misbound:
                return Check("contradicted", f"the source gives {misbound[0]} for {misbound[1]}", disagrees=True)
            if self._figure_of_another_measure(body, quote):
                return Check("contradicted", "the source gives this figure for something else")
        return SUPPORTED

    @staticmethod
    def _figure_of_another_measure(claim: str, quote: str) -> bool:
        """Whether the claim gives a figure with a word the quote binds only to its other figures: "the price per
        million tokens is $562,027" against a quote where 562,027 is the revenue and the price is another figure."""
        quote_bound = _figures_measuring(quote)
        for figure, claim_words in _figures_measuring(claim, alone=True):
            owners = [words for value, words in quote_bound if value == figure]
            if not owners:
                continue
            elsewhere = {w for value, words in quote_bound if value != figure for w in words}
            if claim_words & (elsewhere - set().union(*owners)):
                return True
        return False

    @staticmethod
    def _misbound_figure(claim: str, quote: str) -> tuple[str, str] | None:
        """(figure, the name the quote gives it to) when the claim pairs a figure with a name that the quote pairs
        only with other figures."""
        spelled = {name.lower(): name for name in _NAME.findall(quote)}  # as the quote writes each name
        quote_names = set(spelled)
        quote_bound = figures_bound(quote)
        for figure, claim_names in figures_bound(claim):
            shared = claim_names & quote_names
            if not shared:
                continue
            owners = [names for value, names in quote_bound if value == figure]
            if not owners:
                continue
            # A name of the claim's clause that the quote binds to other figures, never to this one.
            elsewhere = {name for name in shared if not any(name in names for names in owners)}
            elsewhere &= {name for value, names in quote_bound if value != figure for name in names}
            if elsewhere:
                other = sorted(set().union(*owners) - claim_names) or sorted(set().union(*owners))
                return figure, spelled.get(other[0], other[0]) if other else "another item"
        return None
