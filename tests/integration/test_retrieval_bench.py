"""The benches that go through the answer chain, as a reader runs them, on a small real index: the retrieval
ablation (`bench/retrieval.py`) broke silently once when the chain's retrieval step was rewritten, so both it and
the re-verification of a saved run (`bench/reverify.py`) are run here. The article alone is indexed and question
translation is off (it would load the local model for each English question). The verifier's check against gold
answers (`bench/gold_check.py`) needs no index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import MODELS_DIR, REPO

ARTICLE = REPO / "corpus" / "deepseek_article_fr.txt"
BENCH = REPO / "bench" / "retrieval.py"
REVERIFY = REPO / "bench" / "reverify.py"
GOLD_CHECK = REPO / "bench" / "gold_check.py"


@pytest.fixture(scope="module")
def article_index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a data dir holding the article indexed with the real e5 model."""
    data = tmp_path_factory.mktemp("bench") / "data"
    data.mkdir()
    (data / "models").symlink_to(MODELS_DIR, target_is_directory=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data), "RAG_QUERY_TRANSLATION": "off"}
    rag = Path(sys.executable).with_name("rag")
    subprocess.run([str(rag), "index", str(ARTICLE)], env=env, check=True, capture_output=True, timeout=600)
    return env


def run_bench(script: Path, *args: str, env: dict[str, str]) -> dict:
    """A bench run as a reader runs it; its --json report."""
    done = subprocess.run(
        [sys.executable, str(script), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_the_bench_measures_every_variant_through_the_chain(article_index: dict[str, str]):
    report = run_bench(BENCH, "--sets", "dev", "--limit", "4", env=article_index)
    results = report["results"]
    assert len(results) == 12 and list(results)[-1].endswith("default)")
    for variant in results.values():
        dev = variant["dev"]["all"]
        assert dev["n"] == 4
        assert 0.0 <= dev["mrr"] <= dev["recall"] <= 1.0
    # The first dev questions are about the article, the one document indexed: the default finds their evidence.
    assert results[list(results)[-1]]["dev"]["all"]["recall"] >= 0.75
    assert report["latency"]["retrieve ms (+ places for the other language)"]["n"] == 4


def test_a_saved_run_is_judged_again_by_todays_checks(article_index: dict[str, str], tmp_path: Path):
    """A saved answer with an invented year is withheld on re-verification, and a true one stays shown: the bench
    feeds the saved sentences through the chain's real attribution and verifier, not a copy of their verdicts."""
    saved = {
        "items": [
            {
                "id": "dev-001",
                # with a note that another document differs, which the article alone cannot hold
                "answer": "DeepSeek a été lancé fin janvier 2025. [1] Les sources divergent sur ce point [2].",
                "refused": False,
                "correct": True,
            },
            {"id": "dev-003", "answer": "DeepSeek a été fondé en 2016 à Pékin. [1]", "refused": False},
            {"id": "dev-004", "answer": "Les documents ne contiennent pas la réponse.", "refused": True},
        ]
    }
    run = tmp_path / "run.json"
    run.write_text(json.dumps(saved), encoding="utf-8")
    dev = REPO.parent / "shared" / "eval" / "dev.jsonl"
    report = run_bench(REVERIFY, str(run), "--items", str(dev), "--show", env=article_index)
    assert report["replayed"] == 2  # the refusal the model wrote itself has nothing to re-verify
    assert report["changed"] == {"uncategorised: wrong -> refused": 1}
    assert (report["before"]["sources_differ"], report["after"]["sources_differ"]) == (1, 0)
    (detail,) = report["details"]
    assert (
        detail["id"] == "dev-003" and detail["withheld"][0][2] == "a year neither the passages nor the question state"
    )


def test_no_rule_reads_a_tuned_gold_answer_as_contradicted_by_its_own_evidence(tmp_path: Path):
    """The verifier's rules against the true answers of the sets we may read: any rule that fires there misreads the
    language. Then the same bench on a set with one wrong "gold" answer finds it, so the check can fail."""
    report = run_bench(GOLD_CHECK, "--sets", "dev,even", env=dict(os.environ))
    for name in ("dev", "even"):
        assert report[name]["items"] > 20
        assert (report[name]["misread"], report[name]["exposed"]) == (0, 0), report[name]["by_reason"]
    wrong = {
        "id": "t-002",
        "question": "Est-ce que R1 consomme davantage d'énergie ?",
        "answer": "Oui, R1 consomme davantage d'énergie que ses concurrents.",
        "evidence": ["R1 semble consommer beaucoup moins d'énergie que ses concurrents américains."],
        "source": "a.txt",
    }
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps(wrong, ensure_ascii=False) + "\n", encoding="utf-8")
    report = run_bench(GOLD_CHECK, "--items", str(items), "--sets", "even", "--show", env=dict(os.environ))
    (found,) = report["even"]["found"]
    assert (found["kind"], found["reason"]) == ("misread", "the source compares the other way (more/less)")


def test_gold_answers_go_through_the_same_checks_as_a_model_s(article_index: dict[str, str], tmp_path: Path):
    """`--gold`: the set's own answers as if a model wrote them. A true one is shown and cited; an answer with a year
    the article never states is withheld, and the report says whether its evidence reached the passages and the
    excerpts, which tells retrieval's misses from attribution's."""
    evidence = "l'interdiction de DeepSeek par l'Italie le 30 janvier pour des raisons de transfert de données"
    rows = [
        {
            "id": "g-002",
            "question": "Pourquoi l'Italie a-t-elle interdit DeepSeek ?",
            "answer": "L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données.",
        },
        {
            "id": "g-004",
            "question": "Quand l'Italie a-t-elle interdit DeepSeek ?",
            "answer": "L'Italie a interdit DeepSeek le 30 janvier 2019.",
        },
        {"id": "g-006", "question": "Quel est le budget de l'AI Office ?", "answerable": False},
    ]
    items = tmp_path / "gold.jsonl"
    lines = [json.dumps(row | {"evidence": [evidence], "source": ARTICLE.name}, ensure_ascii=False) for row in rows]
    items.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_bench(REVERIFY, "--gold", "even", "--items", str(items), "--show", env=article_index)
    assert report["replayed"] == 2  # the unanswerable item has no gold answer to check
    assert report["changed"] == {"uncategorised: correct -> refused": 1}
    (detail,) = report["details"]
    assert detail["id"] == "g-004" and detail["withheld"][0][2] == "a year neither the passages nor the question state"
    assert (detail["evidence_retrieved"], detail["evidence_shown"]) == (1.0, 1.0)
    assert report["after"]["citation_precision"] == 1.0  # the true answer, cited to the article


def test_the_vector_index_bench_compares_its_search_with_exhaustive_search(article_index: dict[str, str]):
    """`bench/vector_recall.py` (how `RAG_SEARCH_EF` was chosen), one process per ef_search value."""
    rows = run_bench(REPO / "bench" / "vector_recall.py", "--ef", "10,1000", env=article_index)
    assert {row["collection"] for row in rows} == {"rag__fr", "rag__sentences__fr"}  # the article is French
    assert sorted((row["collection"], row["ef_search"]) for row in rows) == [
        ("rag__fr", 10),
        ("rag__fr", 1000),
        ("rag__sentences__fr", 10),
        ("rag__sentences__fr", 1000),
    ]
    for row in rows:
        assert row["k"] == (60 if "sentences" in row["collection"] else 20) and row["questions"] > 100
        assert 0.0 <= row["worst_recall"] <= row["recall"] <= 1.0
    # On an index this small, exploring 1,000 candidates is exhaustive search (but for equal distances at the
    # last place, a sentence stored in two overlapping chunks, which the two searches may order otherwise).
    assert all(row["recall"] >= 0.98 for row in rows if row["ef_search"] == 1000)
