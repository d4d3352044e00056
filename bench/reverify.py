"""Re-verify a saved evaluation run with today's citation checks: a change to verification measured in minutes.

    .venv/bin/python bench/reverify.py RUN.json [--items ../shared/eval/dev2.jsonl] [--show] [--json]

RUN.json is the output of `rag eval --json`. Each item's question goes through the answer chain again (the same
retrieval, against the current index: RAG_DATA_DIR), but instead of a model, the sentences that model wrote in the
saved run (the answer's and the withheld ones) are fed back, and today's attribution and verifier judge them. So
the local model's 10-30 minutes per half are not spent again to see what a new rule withholds or lets through.
Items the model itself refused have nothing to re-verify, and items with history are skipped (making a follow-up
standalone needs the model). Prints the totals before and after, and how many items changed, by category; with
--show, each changed item (only for the half you may read: the odd half is judged by its counts).

    .venv/bin/python bench/reverify.py --gold even|odd|all [--items ../shared/eval/dev2.jsonl] [--show] [--json]

With --gold, the run is made of the question set's own gold answers, as if a model had written exactly them: what
retrieval, attribution and the verifier then do to a true answer (withhold it: "correct -> refused"; cite it; say
the sources differ) is the answer path's own ceiling, whatever the model. Answerable items without history only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.evaluation import (  # noqa: E402
    EvalItem,
    answer_sentences,
    evidence_shown,
    load_items,
    score_item,
    select_split,
)
from rag.generation import CONFLICT_NOTES, GenerationRequest  # noqa: E402
from rag.schema import Answer  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"
TOTALS = ("refused", "correct", "citation_precision", "citation_recall", "claim_and_refusal", "sources_differ")


def says_sources_differ(answer: str) -> bool:
    """Whether an answer carries the note that another document says otherwise (see `Attributor._conflict`)."""
    return any(note in answer for note in CONFLICT_NOTES.values())


class SavedSentences:
    """A generator that writes what the saved run's model wrote, whatever it is shown."""

    def __init__(self, name: str, text: str):
        self.name = name
        self.text = text
        self.shown: list[tuple[str, str]] = []  # (source, excerpt) as the prompt would have shown them

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.shown = [(request.passages[e.index].source, e.text) for e in request.excerpts]
        yield self.text


def model_sentences(saved: dict) -> list[str]:
    """What the model wrote in a saved answer: its shown sentences (citation marks removed) and its withheld ones;
    nothing for an answer the model refused itself."""
    shown = [] if saved["refused"] else answer_sentences(saved["answer"])
    shown = [sentence for sentence in shown if not says_sources_differ(sentence)]  # the chain's note, not the model's
    return shown + [withheld["text"] for withheld in saved.get("unsupported", [])]


def gold_run(items: list[EvalItem]) -> dict:
    """A run in which the model wrote each answerable item's gold answer, word for word."""
    answered = [item for item in items if item.answerable and not item.history]
    return {"items": [{"id": item.id, "answer": item.answer, "refused": False, "correct": True} for item in answered]}


def outcome(scored: dict, item: EvalItem) -> str:
    """How an answer ended, in the terms the metrics count: refused, or shown and (for an answerable item) correct
    or wrong."""
    if scored["refused"]:
        return "refused"
    return ("correct" if scored.get("correct") else "wrong") if item.answerable else "shown"


def reverify(service: RagService, items: dict[str, EvalItem], run: dict) -> dict:
    before: Counter = Counter()
    after: Counter = Counter()
    changed: Counter = Counter()
    details = []
    replayed = 0
    for saved in run["items"]:
        item = items.get(saved["id"])
        sentences = model_sentences(saved)
        if item is None or item.history or not sentences:
            continue
        replayed += 1
        generator = SavedSentences(saved.get("generator") or "saved", " ".join(sentences))
        answer: Answer | None = None
        for event in service.chain.stream(item.question, k=service.settings.k, generator=generator):
            if event.type == "final":
                answer = event.answer
        assert answer is not None
        scored = score_item(item, answer)
        saved = saved | {"sources_differ": says_sources_differ(saved["answer"])}
        scored["sources_differ"] = says_sources_differ(answer.answer)
        for key in TOTALS:
            before[key] += float(saved.get(key) or 0)
            after[key] += float(scored.get(key) or 0)
        was, now = outcome(saved, item), outcome(scored, item)
        if was != now:
            change = f"{item.category}: {was} -> {now}"
            changed[change] += 1
            details.append(
                {
                    "id": item.id,
                    "change": change,
                    "before": saved["answer"],
                    "after": answer.answer,
                    "withheld": [(s.text, s.verdict, s.reason) for s in answer.unsupported],
                    "evidence_retrieved": scored.get("recall_at_k"),  # None for an unanswerable item
                    "evidence_shown": evidence_shown(item, generator.shown) if item.answerable else None,
                }
            )
    return {
        "replayed": replayed,
        "before": {key: round(value, 3) for key, value in before.items()},
        "after": {key: round(value, 3) for key, value in after.items()},
        "changed": dict(changed),
        "details": details,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, nargs="?", help="a saved `rag eval --json` output")
    parser.add_argument("--items", type=Path, default=EVAL / "dev2.jsonl", help="the question set it was run on")
    parser.add_argument("--gold", choices=("even", "odd", "all"), help="re-verify the set's gold answers instead")
    parser.add_argument("--show", action="store_true", help="print each item whose outcome changed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if (args.run is None) == (args.gold is None):
        parser.error("give either a saved run or --gold")
    items = {item.id: item for item in load_items(args.items)}
    run = (
        gold_run(select_split(list(items.values()), args.gold))
        if args.gold
        else json.loads(args.run.read_text("utf-8"))
    )
    service = RagService(Settings(generator="extractive"))  # no model to warm up: the saved run is the model
    service.warm_up()
    report = reverify(service, items, run)
    if not args.show:
        report.pop("details")
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"re-verified {report['replayed']} answers (sums over them)")
    for key in TOTALS:
        print(f"  {key:20} {report['before'].get(key, 0):8} -> {report['after'].get(key, 0)}")
    for change, count in sorted(report["changed"].items()):
        print(f"  changed  {change}: {count}")
    for detail in report.get("details", []):
        print(f"\n{detail['id']} ({detail['change']})\n  before: {detail['before']}\n  after:  {detail['after']}")
        if detail["evidence_retrieved"] is not None:
            retrieved, shown = detail["evidence_retrieved"], detail["evidence_shown"]
            print(f"  evidence spans in the passages: {retrieved:.2f}, in the excerpts shown: {shown:.2f}")
        for text, verdict, reason in detail["withheld"]:
            print(f"  withheld ({verdict}{': ' + reason if reason else ''}): {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
