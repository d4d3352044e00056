"""`rag eval`: retrieval, citation, answer and refusal quality on a question set, against the current index.

Item format (one JSON object a line): `question`, `answer` (gold), `source` (a file name, or a list for
questions that need two documents), `evidence` (exact text of that file, or a list), `answerable`.

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
  counts as correct when at least half are found. Refused answers are not correct.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.lexical import analyze, fold
from rag.schema import Answer

_FOOTNOTE = re.compile(r"\[\^[^\]]+\]")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_NON_WORD = re.compile(r"[^\w]+")


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
        )

    def spans(self) -> list[tuple[str, str]]:
        return list(zip(self.sources, self.evidence, strict=False))


def load_items(path: Path) -> list[EvalItem]:
    with path.open(encoding="utf-8") as handle:
        return [EvalItem.from_json(json.loads(line)) for line in handle if line.strip()]


def _covered(source: str, text: str, spans: Sequence[tuple[str, str]]) -> list[bool]:
    name = Path(source).name
    return [name == span_source and covers(text, evidence) for span_source, evidence in spans]


def key_terms(text: str) -> set[str]:
    return set(analyze(text))


def score_item(item: EvalItem, answer: Answer) -> dict[str, Any]:
    spans = item.spans()
    result: dict[str, Any] = {
        "id": item.id,
        "question": item.question,
        "answerable": item.answerable,
        "answer": answer.answer,
        "refused": answer.refused,
        "generator": answer.generator,
        "timings_ms": answer.timings_ms.model_dump(),
    }
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
    result["correct"] = (not answer.refused) and bool(gold) and len(found) / len(gold) >= 0.5
    return result


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 1)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    latency = {
        stage: {
            "p50": _percentile([r["timings_ms"][stage] for r in results], 0.5),
            "p95": _percentile([r["timings_ms"][stage] for r in results], 0.95),
        }
        for stage in ("retrieve", "generate", "total")
    }
    return {
        "items": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "recall_at_k": _mean([r["recall_at_k"] for r in answerable if "recall_at_k" in r]),
        "mrr": _mean([r["reciprocal_rank"] for r in answerable if "reciprocal_rank" in r]),
        "citation_precision": _mean([r["citation_precision"] for r in answerable if "citation_precision" in r]),
        "citation_recall": _mean([r["citation_recall"] for r in answerable if "citation_recall" in r]),
        "answer_correctness": _mean([float(r["correct"]) for r in answerable if "correct" in r]),
        "refusal_rate": _mean([float(r["refused"]) for r in unanswerable]),
        "false_refusal_rate": _mean([float(r["refused"]) for r in answerable]),
        "latency_ms": latency,
    }


def evaluate(
    items: Sequence[EvalItem],
    ask: Callable[[str], Answer],
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    results = []
    for item in items:
        result = score_item(item, ask(item.question))
        results.append(result)
        if on_item:
            on_item(result)
    return {"metrics": summarise(results), "items": results}
