"""The verifier against true answers: how often would its rules withhold a gold answer checked against its own
evidence? A rule that fires there misreads the language (a true claim read as contradicted), whatever a model
writes; a rule is only worth its catches if this stays near zero, on the unseen half too.

    .venv/bin/python bench/gold_check.py [--sets dev,even,odd] [--items ../shared/eval/dev2.jsonl] [--show] [--json]

Each sentence of each answerable item's gold answer goes through `MeaningRules` against each sentence of the item's
evidence, with the item's question. A gold sentence counts as misread when every evidence sentence contradicts
it, and as exposed when some do (the attribution might pick one of those). No index, no model: seconds. --show
prints each misread or exposed sentence of the sets you may read (dev, even); the odd half is judged by its counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from index.chunking import split_sentences  # noqa: E402
from rag.evaluation import EvalItem, load_items, select_split  # noqa: E402
from rag.verification import MeaningRules, Verifier  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"
READABLE = ("dev", "even")


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)] or [text]


def check_item(verifier: Verifier, item: EvalItem) -> list[dict]:
    """The gold sentences of `item` that its evidence sentences contradict: all of them (misread) or some (exposed),
    with the first one's reason."""
    evidence = [sentence for text in item.evidence for sentence in sentences(text)]
    found = []
    for claim in sentences(item.answer):
        verdicts = [(verifier.verify(claim, quote, question=item.question), quote) for quote in evidence]
        against = [(check, quote) for check, quote in verdicts if check.verdict == "contradicted"]
        if against:
            check, quote = against[0]
            kind = "misread" if len(against) == len(verdicts) else "exposed"
            found.append({"id": item.id, "kind": kind, "claim": claim, "reason": check.reason, "quote": quote})
    return found


def load_set(name: str, split_items: Path) -> list[EvalItem]:
    """ "dev" is dev.jsonl; "even", "odd" and "all" are the halves of `split_items` (dev2.jsonl by default)."""
    if name == "dev":
        return load_items(EVAL / "dev.jsonl")
    return select_split(load_items(split_items), name)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="dev,even,odd")
    parser.add_argument("--items", type=Path, default=EVAL / "dev2.jsonl", help="the set split into even and odd")
    parser.add_argument("--show", action="store_true", help="print each sentence found (dev and even only)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    verifier = MeaningRules()
    report = {}
    for name in args.sets.split(","):
        items = [item for item in load_set(name, args.items) if item.answerable]
        found = [row for item in items for row in check_item(verifier, item)]
        counts = Counter(f"{row['kind']}: {row['reason']}" for row in found)
        report[name] = {
            "items": len(items),
            "misread": sum(row["kind"] == "misread" for row in found),
            "exposed": sum(row["kind"] == "exposed" for row in found),
            "by_reason": dict(counts),
        }
        if args.show and name in READABLE:
            report[name]["found"] = found
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    for name, row in report.items():
        misread, exposed = row["misread"], row["exposed"]
        print(f"{name}: {row['items']} answerable items; gold sentences misread {misread}, exposed {exposed}")
        for reason, count in sorted(row["by_reason"].items()):
            print(f"  {count} {reason}")
        for found in row.get("found", []):
            print(f"  {found['id']} {found['kind']}: {found['claim']!r} | {found['reason']} | {found['quote']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
