"""Attribution against known pairs: how often does it find a gold answer sentence supported by the item's own
evidence (a true pair), and how often by the evidence of another item on the same document (a wrong pair: same
topic, another fact)? Within one language and across French and English, because across languages words rarely
match and the embeddings score a translation lower. This is what the attribution's threshold and its reading of
the other language are judged by (docs/evaluation.md).

    .venv/bin/python bench/support_pairs.py [--sets dev,even,odd] [--json]

Each gold sentence of three words or more goes through `Attributor.attribute`, as a model's sentence does (figures,
names, the verifier and all), against one evidence text at a time as a passage, with the item's question. A claim
counts once per language class for its own evidence (supported by any of its evidence texts in that class) and once
per other item. Needs the e5 model (RAG_DATA_DIR's), no index; about a minute. The odd half is read as totals.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from gold_check import load_set, sentences  # noqa: E402

from rag.citations import (  # noqa: E402
    AttributionConfig,
    Attributor,
    PassageSentences,
    build_passage_sentences,
    claim_of,
)
from rag.evaluation import EvalItem  # noqa: E402
from rag.language import detect_language  # noqa: E402
from rag.schema import Passage  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"


def as_passage(text: str) -> Passage:
    return Passage(
        n=1,
        chunk_id="evidence",
        source="evidence",
        title="evidence",
        start=0,
        end=len(text),
        text=text,
        score=1.0,
        language=detect_language(text),
    )


class EvidencePassages:
    """Each evidence text as a passage with its sentence vectors, encoded once (a text is compared with many claims)."""

    def __init__(self, encoder):
        self.encoder = encoder
        self._built: dict[str, PassageSentences] = {}

    def __call__(self, text: str) -> PassageSentences:
        if text not in self._built:
            self._built[text] = build_passage_sentences(self.encoder, [as_passage(text)])[0]
        return self._built[text]


def supported_by(evidence: EvidencePassages, item: EvalItem, claim: str, texts: list[str]) -> dict[str, bool]:
    """For each language class ("same", "cross") of `texts`: whether any of them supports `claim`."""
    language = detect_language(item.question)
    found: dict[str, bool] = {}
    for text in texts:
        built = evidence(text)
        kind = "same" if built.language == language else "cross"
        attributor = Attributor(evidence.encoder, [built], question=item.question, language=language)
        found[kind] = found.get(kind, False) or attributor.attribute(claim).supported
    return found


def count_pairs(encoder, items: list[EvalItem]) -> Counter:
    evidence = EvidencePassages(encoder)
    counts: Counter = Counter()
    for item in items:
        others = [o for o in items if o.id != item.id and set(o.sources) & set(item.sources)]
        for sentence in sentences(item.answer):
            if len(claim_of(sentence).split()) < AttributionConfig().min_words:
                continue  # a fragment is neither cited nor flagged: nothing to measure
            for kind, supported in supported_by(evidence, item, sentence, item.evidence).items():
                counts[("true", kind, supported)] += 1
            for other in others:
                for kind, supported in supported_by(evidence, item, sentence, other.evidence).items():
                    counts[("wrong", kind, supported)] += 1
    return counts


def rates(counts: Counter) -> dict[str, dict[str, float | int]]:
    report = {}
    for pair in ("true", "wrong"):
        for kind in ("same", "cross"):
            yes, no = counts[(pair, kind, True)], counts[(pair, kind, False)]
            report[f"{pair} pairs, {'one language' if kind == 'same' else 'across languages'}"] = {
                "pairs": yes + no,
                "supported": round(yes / (yes + no), 3) if yes + no else 0.0,
            }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="dev,even,odd")
    parser.add_argument("--items", type=Path, default=EVAL / "dev2.jsonl", help="the set split into even and odd")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    encoder = RagService(Settings()).embedder
    report = {}
    for name in args.sets.split(","):
        items = [item for item in load_set(name, args.items) if item.answerable]
        report[name] = rates(count_pairs(encoder, items))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print("| set | " + " | ".join(report[next(iter(report))]) + " |")
    print("|---|" + "---|" * len(report[next(iter(report))]))
    for name, row in report.items():
        print(f"| {name} | " + " | ".join(f"{r['supported']:.2f} of {r['pairs']}" for r in row.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
