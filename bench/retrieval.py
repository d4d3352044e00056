"""Retrieval ablation: recall@k and MRR of each retrieval mechanism, on the tuned and the unseen questions, per
language pair, so a reader sees what each mechanism buys on questions nobody tuned for.

    .venv/bin/python bench/retrieval.py [--k 5] [--sets dev,even,odd] [--limit N] [--json]

Question sets: ../shared/eval/dev.jsonl ("dev"), and the even ("even", tuned on) and odd ("odd", unseen) ids of
../shared/eval/dev2.jsonl; answerable items only. Runs against the current index (RAG_DATA_DIR, default .rag/:
index corpus/ and ../shared/corpus/related/ first). Every variant goes through the answer chain's own retrieval
step (follow-ups made standalone as the chain does, with the extractive generator: the previous question joins
the follow-up), and each adds one mechanism to the one above it. Translations are made once per question by the
local model and shared by the variants that use them; their cost is reported apart from retrieval's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.chain import AnswerChain  # noqa: E402
from rag.evaluation import EvalItem, evidence_shown, load_items, score_item, select_split  # noqa: E402
from rag.retrieval import FusionWeights, HybridRetriever  # noqa: E402
from rag.schema import Answer  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"


@dataclass(frozen=True)
class Variant:
    weights: FusionWeights
    translate: bool = False


# Each row adds one mechanism to the row above; the rows before the last fuse ranks with RRF's usual k = 60.
FLAT = {"rrf_k": 60, "named_places": False, "versions_first": False, "dense_ranks_all": False}
NO_PARTS = {"part_places": False, "decisive_lexical_ratio": None, **FLAT}  # the places added later, off
VARIANTS = {
    "dense chunks": Variant(
        FusionWeights(sentence=0, lexical_same_language=0, lexical_other_language=0, slots=0, **NO_PARTS)
    ),
    "+ sentence vectors": Variant(
        FusionWeights(lexical_same_language=0, lexical_other_language=0, slots=0, **NO_PARTS)
    ),
    "+ BM25, plain RRF": Variant(FusionWeights(lexical_same_language=1, lexical_other_language=1, slots=0, **NO_PARTS)),
    "+ BM25 weighted by language": Variant(FusionWeights(slots=0, **NO_PARTS)),
    "+ places for the other language": Variant(FusionWeights(**NO_PARTS)),
    "+ question translated": Variant(FusionWeights(**NO_PARTS), translate=True),
    "+ a place for each part of the question": Variant(
        FusionWeights(decisive_lexical_ratio=None, **FLAT), translate=True
    ),
    "+ a place for a decisive word match": Variant(FusionWeights(**FLAT), translate=True),
    "+ top ranks count more (RRF k = 10)": Variant(
        FusionWeights(named_places=False, versions_first=False, dense_ranks_all=False), translate=True
    ),
    "+ a place for the documents a question names": Variant(
        FusionWeights(versions_first=False, dense_ranks_all=False), translate=True
    ),
    "+ passages stating the question's versioned name first": Variant(
        FusionWeights(dense_ranks_all=False), translate=True
    ),
    "+ every candidate ranked by its similarity in the dense list (default)": Variant(FusionWeights(), translate=True),
}

DEFAULT_VARIANT = "+ every candidate ranked by its similarity in the dense list (default)"
assert DEFAULT_VARIANT in VARIANTS


def question_sets(names: list[str], limit: int | None = None) -> dict[str, list[EvalItem]]:
    dev2 = load_items(EVAL / "dev2.jsonl")
    sources = {
        "dev": lambda: load_items(EVAL / "dev.jsonl"),
        "even": lambda: select_split(dev2, "even"),
        "odd": lambda: select_split(dev2, "odd"),
    }
    return {name: [item for item in sources[name]() if item.answerable][:limit] for name in names}


def measure(chain: AnswerChain, items: list[EvalItem], k: int, *, prompt: bool = False) -> list[dict]:
    """Per item: recall@k, reciprocal rank and timings; with `prompt`, also how much of the evidence the
    passages and then the excerpts the generator is shown hold (`rag.evaluation.evidence_shown`)."""
    extractive = ExtractiveOnly()
    rows = []
    for item in items:
        state = chain.prepare(item.question, history=item.history, k=k, generator=extractive)
        result = score_item(item, Answer(answer="", passages=state["passages"]))
        row = {
            "pair": result["language_pair"],
            "recall": result["recall_at_k"],
            "rr": result["reciprocal_rank"],
            "retrieve_ms": state["retrieve_ms"],
            "translate_ms": state["translate_ms"],
        }
        if prompt and state["passages"]:
            request = chain.request(state)
            row["in_passages"] = evidence_shown(item, [(p.source, p.text) for p in request.passages])
            row["in_excerpts"] = evidence_shown(
                item, [(request.passages[e.index].source, e.text) for e in request.excerpts]
            )
        rows.append(row)
    return rows


class ExtractiveOnly:
    """Stands for a generator that is not an LLM, so the chain makes follow-ups standalone without one."""

    name = "extractive"


def summary(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups["all"].append(row)
        groups[row["pair"]].append(row)
    return {
        name: {
            "n": len(group),
            "recall": round(statistics.fmean(r["recall"] for r in group), 3),
            "mrr": round(statistics.fmean(r["rr"] for r in group), 3),
            **{
                key: round(statistics.fmean(r.get(key, 0.0) for r in group), 3)
                for key in ("in_passages", "in_excerpts")
                if any(key in r for r in group)
            },
        }
        for name, group in sorted(groups.items(), key=lambda kv: (kv[0] != "all", kv[0]))
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--sets", default="dev,even,odd")
    parser.add_argument("--limit", type=int, default=None, help="the first N answerable items of each set")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sets = question_sets(args.sets.split(","), args.limit)
    service = RagService(Settings(generator="extractive"))
    service.warm_up()
    results: dict[str, dict] = {}
    latency: dict[str, list[float]] = defaultdict(list)
    translated_sets: set[str] = set()  # only the first translating variant pays for the translations
    for name, variant in VARIANTS.items():
        retriever = HybridRetriever(
            service.store, service.lexical, service.embedder.embed_query, weights=variant.weights
        )
        chain = AnswerChain(
            retriever,
            service.embedder,
            min_similarity=service.settings.min_similarity,
            drop_unsupported=False,
            translator=service.translator if variant.translate else lambda: None,
        )
        results[name] = {}
        for set_name, items in sets.items():
            rows = measure(chain, items, args.k, prompt=name == DEFAULT_VARIANT)
            results[name][set_name] = summary(rows)
            if name in ("+ places for the other language", DEFAULT_VARIANT):  # without and with the translation
                latency[f"retrieve ms ({name})"] += [r["retrieve_ms"] for r in rows]
            if variant.translate and set_name not in translated_sets:  # the later ones read the translator's cache
                translated_sets.add(set_name)
                latency["translate ms"] += [r["translate_ms"] for r in rows if r["translate_ms"]]
    timing = {
        name: {"p50": statistics.median(v), "p95": sorted(v)[int(0.95 * (len(v) - 1))], "n": len(v)}
        for name, v in latency.items()
        if v
    }
    if args.json:
        print(json.dumps({"k": args.k, "results": results, "latency": timing}, indent=2))
        return
    print(f"### recall@{args.k} / MRR, answerable items\n")
    print("| variant | " + " | ".join(f"{s} (n={len(i)})" for s, i in sets.items()) + " |")
    print("|---|" + "---|" * len(sets))
    for name, per_set in results.items():
        cells = [f"{per_set[s]['all']['recall']:.3f} / {per_set[s]['all']['mrr']:.3f}" for s in sets]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for set_name in sets:
        pairs = [p for p in results[name][set_name] if p != "all"]
        print(f"\n### {set_name}: recall@{args.k} / MRR per language pair (question → evidence)\n")
        print("| variant | " + " | ".join(f"{p} (n={results[name][set_name][p]['n']})" for p in pairs) + " |")
        print("|---|" + "---|" * len(pairs))
        for variant_name, per_set in results.items():
            cells = [
                f"{per_set[set_name][p]['recall']:.3f} / {per_set[set_name][p]['mrr']:.3f}"
                if p in per_set[set_name]
                else "–"
                for p in pairs
            ]
            print(f"| {variant_name} | " + " | ".join(cells) + " |")
    print(f"\n### evidence reaching the prompt ({DEFAULT_VARIANT})\n")
    print("Evidence spans with a sentence (4+ words) in the top passages, then in the excerpts the prompt shows.\n")
    print("| set | in the top passages | in the excerpts |")
    print("|---|---|---|")
    for set_name in sets:
        row = results[DEFAULT_VARIANT][set_name]["all"]
        print(f"| {set_name} | {row['in_passages']:.3f} | {row['in_excerpts']:.3f} |")
    print("\n### latency (ms)\n")
    for name, t in timing.items():
        print(f"- {name}: p50 {t['p50']:.0f}, p95 {t['p95']:.0f} (n={t['n']})")


if __name__ == "__main__":
    main()
