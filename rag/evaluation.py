"""`rag eval`: retrieval, citation, answer and refusal quality on a question set, against the current index.

Item format (one JSON object a line): `question`, `answer` (gold), `source` (a file name, or a list for
questions that need two documents), `evidence` (exact text of that file, or a list), `answerable`; optionally
`id` (e.g. "d2-017"), `lang` (the question's language), `category` and `history` (the conversation before a
follow-up question, a list of {"role", "content"} messages, passed to the answer function with the question).

Matching rules, stated so the numbers can be read:
- a passage *covers* an evidence span when it comes from the same file (compared by file name) and holds the
  span: after dropping markup the loaders remove (markdown links and footnote marks) and folding case,
  punctuation and whitespace, either the whole span is in the passage, or at least 80% of its words are;
- recall@k: share of evidence spans covered by one of the k retrieved passages (averaged over items);
  MRR: 1 / rank of the first passage covering a span;
- citation precision: share of cited passages that cover an evidence span of the item; citation recall:
  share of evidence spans covered by a cited passage;
- answer correctness: the gold answer's key terms (content words and numbers, through the same analyzer as
  BM25: accents, elisions, stopwords of both languages and plural endings folded) found in the answer; an item
  counts as correct when at least half are found. Refused answers are not correct. When the gold answer opens
  with yes or no ("Non, …", "Yes, …"), the answer must open with the same word: the key terms of "Yes, the
  controls are working" and "No, the controls are not working" are the same, and the first is wrong.

Breakdowns, so a change that helps one kind of question and hurts another shows:
- `by_category`: the headline metrics per `category` ("uncategorised" when an item has none);
- `by_language_pair`: per question language → evidence language, e.g. "fr→en"; the question language is `lang`
  or detected, the evidence language is detected on each evidence span, and an item whose spans are in both
  languages counts under "fr→en+fr". Unanswerable items have no evidence: they count under the question
  language on both sides ("fr→fr"), so refusals are broken down by language too;
- `intervals`: a 95% percentile bootstrap interval of each headline metric, resampling items (1,000 resamples,
  seed 0, so two runs on the same answers give the same interval); a metric that cannot be measured in a
  resample (say, no unanswerable item drawn) is left out of that resample.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from index.chunking import split_sentences
from rag.citations import is_refusal, strip_markers
from rag.language import detect_language
from rag.lexical import analyze, fold
from rag.schema import Answer
from rag.verification import split_yes_no

Split = Literal["even", "odd", "all"]
# An answer function: the question and the conversation before it (empty for a standalone question).
AskFunction = Callable[[str, list[dict[str, str]]], Answer]

_FOOTNOTE = re.compile(r"\[\^[^\]]+\]")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_NON_WORD = re.compile(r"[^\w]+")
_ID_NUMBER = re.compile(r"(\d+)\D*$")


def _normalise(text: str) -> str:
    text = _LINK_TARGET.sub(" ", _FOOTNOTE.sub(" ", text))
    return " ".join(_NON_WORD.sub(" ", fold(text)).split())


def covers(passage_text: str, evidence: str) -> bool:
    passage, span = _normalise(passage_text), _normalise(evidence)
    if not span:
        return False
    if span in passage:
        return True
    words = span.split()
    present = set(passage.split())
    return sum(w in present for w in words) / len(words) >= 0.8


@dataclass
class EvalItem:
    id: str
    question: str
    answer: str
    sources: list[str]
    evidence: list[str]
    answerable: bool
    category: str = "uncategorised"
    language: str = ""
    history: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalItem:
        sources = data.get("source") or []
        evidence = data.get("evidence") or []
        return cls(
            id=str(data.get("id", "")),
            question=data["question"],
            answer=data.get("answer", ""),
            sources=[sources] if isinstance(sources, str) else list(sources),
            evidence=[evidence] if isinstance(evidence, str) else list(evidence),
            answerable=bool(data.get("answerable", True)),
            category=data.get("category") or "uncategorised",
            language=data.get("lang") or detect_language(data["question"]),
            history=list(data.get("history") or []),
        )

    def spans(self) -> list[tuple[str, str]]:
        return list(zip(self.sources, self.evidence, strict=False))

    def language_pair(self) -> str:
        """The question's language → its evidence's, e.g. "fr→en" (edge cases in the module docstring)."""
        found = sorted({detect_language(text) for text in self.evidence}) if self.answerable else []
        return f"{self.language}→{'+'.join(found) or self.language}"

    def number(self) -> int | None:
        """The number ending the id ("d2-017" → 17), which decides the item's split."""
        match = _ID_NUMBER.search(self.id)
        return int(match.group(1)) if match else None


def load_items(path: Path) -> list[EvalItem]:
    with path.open(encoding="utf-8") as handle:
        return [EvalItem.from_json(json.loads(line)) for line in handle if line.strip()]


def select_split(items: Sequence[EvalItem], split: Split) -> list[EvalItem]:
    """Even or odd ids, so one half can be looked at while tuning and the other kept for measuring;
    items without a numeric id belong to "all" only."""
    if split == "all":
        return list(items)
    parity = 0 if split == "even" else 1
    return [item for item in items if (n := item.number()) is not None and n % 2 == parity]


def _covered(source: str, text: str, spans: Sequence[tuple[str, str]]) -> list[bool]:
    name = Path(source).name
    return [name == span_source and covers(text, evidence) for span_source, evidence in spans]


def evidence_shown(item: EvalItem, shown: Sequence[tuple[str, str]]) -> float:
    """The share of the item's evidence spans that reach the generator's prompt, given what it shows as (source,
    text) pairs. A span counts when one of its sentences of four words or more (the whole span when it has none)
    is covered by text shown from its document: a prompt shows excerpts, so it may hold one sentence of a long
    span and not the rest, and retrieval can find a passage whose evidence the excerpts then leave out."""
    spans = item.spans()
    if not spans:
        return 0.0

    def reaches(source: str, evidence: str) -> bool:
        pieces = [evidence[a:b] for a, b in split_sentences(evidence) if len(evidence[a:b].split()) >= 4] or [evidence]
        return any(any(_covered(where, text, [(source, piece) for piece in pieces])) for where, text in shown)

    return sum(reaches(source, evidence) for source, evidence in spans) / len(spans)


def key_terms(text: str) -> set[str]:
    return set(analyze(text))


def answer_sentences(text: str) -> list[str]:
    """The sentences of an answer as a reader reads them, without the citation marks."""
    cleaned, _ = strip_markers(text)
    return [cleaned[a:b] for a, b in split_sentences(cleaned)]


def same_yes_no(gold: str, answer: str) -> bool:
    """Whether the answer says yes or no as the gold answer does (true when the gold answer says neither)."""
    expected, _ = split_yes_no(gold)
    return expected is None or split_yes_no(answer)[0] == expected


def claims_beside_refusal(text: str) -> bool:
    """True for an answer that says something and also that the documents don't say it ("… low cost. The
    documents do not contain the answer."): the user cannot tell which half to believe."""
    refusals = [is_refusal(sentence) for sentence in answer_sentences(text) if analyze(sentence)]
    return any(refusals) and not all(refusals)


def score_item(item: EvalItem, answer: Answer) -> dict[str, Any]:
    spans = item.spans()
    result: dict[str, Any] = {
        "id": item.id,
        "question": item.question,
        "category": item.category,
        "language_pair": item.language_pair(),
        "answerable": item.answerable,
        "answer": answer.answer,
        "refused": answer.refused,
        "generator": answer.generator,
        "timings_ms": answer.timings_ms.model_dump(),
    }
    result["claim_and_refusal"] = claims_beside_refusal(answer.answer)
    result["unsupported"] = [s.model_dump() for s in answer.unsupported]  # to read why an answer was refused
    withheld = (s.text.strip() for s in answer.unsupported)
    result["unsupported_in_text"] = sum(1 for text in withheld if text and text in answer.answer)
    if not item.answerable or not spans:
        return result
    passage_hits = [_covered(p.source, p.text, spans) for p in answer.passages]
    result["recall_at_k"] = sum(any(hits[i] for hits in passage_hits) for i in range(len(spans))) / len(spans)
    first = next((rank for rank, hits in enumerate(passage_hits, start=1) if any(hits)), None)
    result["reciprocal_rank"] = 1 / first if first else 0.0
    cited: dict[str, list[bool]] = {}
    for citation in answer.citations:
        cited.setdefault(citation.chunk_id, _covered(citation.source, citation.text, spans))
    if cited:
        result["citation_precision"] = sum(any(h) for h in cited.values()) / len(cited)
    result["citation_recall"] = sum(any(h[i] for h in cited.values()) for i in range(len(spans))) / len(spans)
    gold = key_terms(item.answer)
    found = gold & key_terms(answer.answer)
    result["key_terms_found"] = round(len(found) / len(gold), 3) if gold else None
    enough = bool(gold) and len(found) / len(gold) >= 0.5
    result["correct"] = not answer.refused and enough and same_yes_no(item.answer, answer.answer)
    return result


# Headline metric → (the per-item result field averaged, whether it is measured on answerable items or
# unanswerable ones).
HEADLINE: dict[str, tuple[str, bool]] = {
    "recall_at_k": ("recall_at_k", True),
    "mrr": ("reciprocal_rank", True),
    "citation_precision": ("citation_precision", True),
    "citation_recall": ("citation_recall", True),
    "answer_correctness": ("correct", True),
    "refusal_rate": ("refused", False),
    "false_refusal_rate": ("refused", True),
}
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 1)


def _item_value(result: dict[str, Any], name: str) -> float | None:
    """What the item contributes to a headline metric, or None when the metric does not apply to it."""
    key, on_answerable = HEADLINE[name]
    if result["answerable"] != on_answerable or result.get(key) is None:
        return None
    return float(result[key])


def headline(results: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    return {name: _mean([v for r in results if (v := _item_value(r, name)) is not None]) for name in HEADLINE}


def _grouped(results: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result[key], []).append(result)
    return {name: {"items": len(group), **headline(group)} for name, group in sorted(groups.items())}


def bootstrap_intervals(
    results: Sequence[dict[str, Any]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, list[float] | None]:
    """95% interval of each headline metric over item resamples: how far the number could move on another
    question set of the same kind, so a difference between two runs can be told from noise."""
    if not results:
        return dict.fromkeys(HEADLINE)
    draws = np.random.default_rng(seed).integers(0, len(results), size=(resamples, len(results)))
    intervals: dict[str, list[float] | None] = {}
    for name in HEADLINE:
        values = np.array([np.nan if (v := _item_value(r, name)) is None else v for r in results])[draws]
        counts = (~np.isnan(values)).sum(axis=1)
        means = np.nansum(values, axis=1)[counts > 0] / counts[counts > 0]
        intervals[name] = [round(float(q), 3) for q in np.percentile(means, [2.5, 97.5])] if means.size else None
    return intervals


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    latency = {
        stage: {
            "p50": _percentile([r["timings_ms"].get(stage, 0.0) for r in results], 0.5),
            "p95": _percentile([r["timings_ms"].get(stage, 0.0) for r in results], 0.95),
        }
        for stage in ("translate", "retrieve", "generate", "total")
    }
    answerable = sum(r["answerable"] for r in results)
    return {
        "items": len(results),
        "answerable": answerable,
        "unanswerable": len(results) - answerable,
        **headline(results),
        # Counts, not rates: each one is a trust failure a user sees, and the target for both is 0.
        "contradictory_answers": sum(r["claim_and_refusal"] for r in results),
        "unsupported_in_text": sum(r["unsupported_in_text"] for r in results),
        "latency_ms": latency,
        "by_category": _grouped(results, "category"),
        "by_language_pair": _grouped(results, "language_pair"),
        "intervals": bootstrap_intervals(results),
    }


def evaluate(
    items: Sequence[EvalItem],
    ask: AskFunction,
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Answer every item through `ask(question, history)`, so follow-ups are answered in their conversation
    the way a front end would ask them, and score the answers."""
    results = []
    for item in items:
        result = score_item(item, ask(item.question, item.history))
        results.append(result)
        if on_item:
            on_item(result)
    return {"metrics": summarise(results), "items": results}


HISTORY_FIELDS = ["timestamp", "questions", "split", "generator", "items", *HEADLINE]


def append_history(path: Path, report: dict[str, Any], questions: str, split: Split) -> dict[str, Any]:
    """One CSV line per run, so runs can be compared over time without keeping every JSON report. The
    generator is the one that actually answered (a missing local model falls back), joined with "+" if several."""
    metrics = report["metrics"]
    row = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "questions": questions,
        "split": split,
        "generator": "+".join(sorted({r["generator"] for r in report["items"]})),
        "items": metrics["items"],
        **{name: "" if metrics[name] is None else metrics[name] for name in HEADLINE},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
    return row


_TEXT_FIELDS = {"timestamp", "questions", "split", "generator"}


def format_history(path: Path) -> str | None:
    """The history CSV as a table with aligned columns (numbers to the right), or None when there is none."""
    if not path.exists():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        return None
    header = rows[0]
    rows = [(row + [""] * len(header))[: len(header)] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if name in _TEXT_FIELDS else cell.rjust(width)
            for cell, width, name in zip(row, widths, header, strict=True)
        ).rstrip()
        for row in rows
    ]
    return "\n".join(lines)
