"""Names that read the same in French and English, so a passage can be asked to state them whatever its language.

Attribution asks a passage that supports a claim to state the claim's versioned names (`grounded_names`), and
retrieval puts first the passages that state the question's (`versioned_names`): "H100" is not "H800", and a
passage on DeepSeek-V2 does not answer a question on DeepSeek-V3, however alike the two read to the embeddings.
"""

from __future__ import annotations

import itertools
import re

# Versioned names (a word starting with a letter that holds a digit: "H100", "Qwen2.5", the "V3" of "DeepSeek-V3")
# and CamelCase ones ("DeepSeek", "OpenAI"). Pieces are cut at anything but letters, digits and a version's dot.
_NAME_PIECE = re.compile(r"[^\W_]+(?:\.\d+)*")
_VERSIONED = re.compile(r"[^\W\d_][^\W_]*\d")
_CAMEL = re.compile(r"[a-z][A-Z]")
_HYPHENATED = re.compile(r"[^\W_]+(?:\.\d+)*(?:-[^\W_]+(?:\.\d+)*)+")  # "DeepSeek-R1-Zero", "Qwen2.5-Math-7B"


def described(text: str, title: str, headings: str, source: str) -> str:
    """Everything a passage's names are read in: its text, its document's title, its headings and its file name (a
    report's text says "we" where its title names the model; a README's passages say "it", its file name "v3")."""
    return " ".join((text, title, headings, source))


def name_pieces(text: str) -> set[str]:
    """The text's pieces, lower-cased, as `grounded_names` compares them, and the compounds that a versioned
    name makes with the capitalised word after it ("R1 Zero" and "R1-Zero" both give "r1-zero")."""
    pieces = _NAME_PIECE.findall(text)
    compounds = {_compound(a, b) for a, b in itertools.pairwise(pieces) if _is_model_suffix(a, b)}
    return {piece.lower() for piece in pieces} | compounds


def _is_model_suffix(piece: str, after: str) -> bool:
    """Whether `after` names a variant of the versioned name `piece` ("Zero" after "R1", "Lite" after "V2")."""
    return bool(_VERSIONED.match(piece)) and after.isalpha() and after[0].isupper()


def _compound(piece: str, after: str) -> str:
    return f"{piece.lower()}-{after.lower()}"


def grounded_names(claim: str, question: str) -> dict[str, str]:
    """The names of a claim that a passage supporting it must state: every versioned name ("H100" is not
    "H800", "Qwen2" is not "Qwen2.5": the near miss is the model's typical slip), and the CamelCase names the
    question does not already give (a claim may restate the question's subject about a passage that only
    implies it). Lower-cased, each with its spelling in the claim."""
    asked = name_pieces(question)
    names = {}
    for piece in _NAME_PIECE.findall(claim):
        lowered = piece.lower()
        if _VERSIONED.match(piece) or (_CAMEL.search(piece) and lowered not in asked):
            names[lowered] = piece
    # A variant is another model: "DeepSeek-R1-Zero reaches 1444" is not what a passage on DeepSeek-R1 says.
    for match in _HYPHENATED.finditer(claim):
        for piece, after in itertools.pairwise(match.group(0).split("-")):
            if _is_model_suffix(piece, after):
                names[_compound(piece, after)] = f"{piece}-{after}"
    return names


def versioned_names(text: str) -> set[str]:
    """The versioned names a text gives, lower-cased, each only in its most specific form: "DeepSeek-R1-Zero"
    names r1-zero, not also r1 (whose every passage would otherwise count as stating it)."""
    names = set(grounded_names(text, text))  # a text's own CamelCase names are "asked": only versioned ones stay
    return {name for name in names if not any(other.startswith(f"{name}-") for other in names)}
