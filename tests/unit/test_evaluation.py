"""`rag eval` without a model: a fake answer function over hand-written items checks the breakdowns, the
bootstrap intervals, the splits, follow-up history and the run history CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rag import cli
from rag.evaluation import (
    HEADLINE,
    EvalItem,
    append_history,
    bootstrap_intervals,
    claims_beside_refusal,
    evaluate,
    evidence_shown,
    format_history,
    load_items,
    score_item,
    select_split,
    summarise,
)
from rag.schema import Answer, Citation, Passage, UnsupportedSentence

FR_EVIDENCE = "La société a été fondée à Hangzhou en juillet 2023 par Liang Wenfeng, qui dirige aussi le fonds."
EN_EVIDENCE = "The model was trained on 14.8 trillion tokens and the full training took 2.788 million GPU hours."

HISTORY = [
    {"role": "user", "content": "How many tokens was the model trained on?"},
    {"role": "assistant", "content": "It was trained on 14.8 trillion tokens [1]."},
]

ITEMS: list[dict[str, Any]] = [
    {
        "id": "t-001",
        "category": "fact",
        "lang": "fr",
        "question": "Où la société a-t-elle été fondée ?",
        "answer": "À Hangzhou.",
        "source": "company_fr.txt",
        "evidence": FR_EVIDENCE,
        "answerable": True,
    },
    {
        "id": "t-002",
        "category": "fact",
        "lang": "en",
        "question": "Who founded the company?",
        "answer": "Liang Wenfeng.",
        "source": "company_fr.txt",
        "evidence": FR_EVIDENCE,
        "answerable": True,
    },
    {
        "id": "t-003",
        "category": "follow-up",
        "lang": "en",
        "question": "And how many GPU hours did that take?",
        "answer": "2.788 million GPU hours.",
        "source": "model_en.md",
        "evidence": EN_EVIDENCE,
        "answerable": True,
        "history": HISTORY,
    },
    {
        "id": "t-004",
        "category": "multi-hop",
        "lang": "fr",
        "question": "Qui a fondé la société, et sur combien de tokens le modèle a-t-il été entraîné ?",
        "answer": "Liang Wenfeng ; 14,8 billions de tokens.",
        "source": ["company_fr.txt", "model_en.md"],
        "evidence": [FR_EVIDENCE, EN_EVIDENCE],
        "answerable": True,
    },
    {
        "id": "t-005",
        "category": "unanswerable",
        "lang": "fr",
        "question": "Quel est le chiffre d'affaires de la société en 2030 ?",
        "answer": "",
        "source": None,
        "evidence": None,
        "answerable": False,
    },
    {
        "id": "t-006",
        "category": "unanswerable",
        "lang": "en",
        "question": "What is the company's revenue in 2030?",
        "answer": "",
        "source": None,
        "evidence": None,
        "answerable": False,
    },
    {
        "id": "extra",
        "question": "Where was the company founded?",
        "answer": "Hangzhou.",
        "source": "company_fr.txt",
        "evidence": FR_EVIDENCE,
        "answerable": True,
    },
]


def _passage(n: int, source: str, text: str) -> Passage:
    return Passage(
        n=n, chunk_id=f"{source}#{n}", source=source, title=source, start=0, end=len(text), text=text, score=1.0
    )


def _citation(passage: Passage) -> Citation:
    return Citation(
        n=passage.n,
        source=passage.source,
        title=passage.title,
        chunk_id=passage.chunk_id,
        start=passage.start,
        end=passage.end,
        text=passage.text,
        quote=passage.text,
        quote_start=0,
        quote_end=len(passage.text),
    )


FR = _passage(1, "corpus/company_fr.txt", FR_EVIDENCE)
EN = _passage(2, "corpus/model_en.md", EN_EVIDENCE)
OTHER = _passage(1, "corpus/other_en.md", "Nothing relevant to any question is written here at all.")

# question → the answer the fake answer function gives (by first words of the question).
ANSWERS: dict[str, Answer] = {
    "Où": Answer(answer="À Hangzhou [1].", passages=[FR], citations=[_citation(FR)], generator="fake"),
    "Who": Answer(answer="I could not tell.", passages=[OTHER], generator="fake"),  # retrieval miss
    "And": Answer(
        answer="2.788 million GPU hours [1].", passages=[OTHER, EN], citations=[_citation(EN)], generator="fake"
    ),
    "Qui": Answer(
        answer="Liang Wenfeng [1], 14,8 billions de tokens [2].",
        passages=[FR, EN],
        citations=[_citation(FR), _citation(EN)],
        generator="fake",
    ),
    "Quel": Answer(answer="Les documents ne le disent pas.", refused=True, generator="fake"),
    "What": Answer(answer="Ten billion dollars.", passages=[OTHER], generator="fake"),  # should have refused
    "Where": Answer(answer="Hangzhou [1].", passages=[FR], citations=[_citation(FR)], generator="fake"),
}


class FakeAsk:
    """Stands in for the service: answers from ANSWERS and records the history each question came with."""

    def __init__(self) -> None:
        self.histories: dict[str, list[dict[str, str]]] = {}

    def __call__(self, question: str, history: list[dict[str, str]]) -> Answer:
        self.histories[question] = history
        return ANSWERS[question.split()[0]]


@pytest.fixture
def question_file(tmp_path: Path) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in ITEMS), encoding="utf-8")
    return path


@pytest.fixture
def report(question_file: Path) -> dict[str, Any]:
    return evaluate(load_items(question_file), FakeAsk())


def test_follow_up_history_reaches_the_answer_function(question_file: Path) -> None:
    ask = FakeAsk()
    evaluate(load_items(question_file), ask)
    assert ask.histories["And how many GPU hours did that take?"] == HISTORY
    assert ask.histories["Who founded the company?"] == []


def test_headline_metrics_keep_their_names(report: dict[str, Any]) -> None:
    metrics = report["metrics"]
    assert metrics["items"] == 7 and metrics["answerable"] == 5 and metrics["unanswerable"] == 2
    assert metrics["recall_at_k"] == 0.8  # all but the "Who" miss
    assert metrics["answer_correctness"] == 0.8
    assert metrics["refusal_rate"] == 0.5
    assert metrics["false_refusal_rate"] == 0.0
    assert set(metrics["latency_ms"]) == {"translate", "retrieve", "generate", "total"}


def test_metrics_by_category(report: dict[str, Any]) -> None:
    by_category = report["metrics"]["by_category"]
    assert set(by_category) == {"fact", "follow-up", "multi-hop", "unanswerable", "uncategorised"}
    for group in by_category.values():
        assert set(HEADLINE) <= set(group)
    assert by_category["fact"]["items"] == 2
    assert by_category["fact"]["recall_at_k"] == 0.5
    assert by_category["follow-up"]["mrr"] == 0.5  # the evidence came second
    assert by_category["multi-hop"]["citation_recall"] == 1.0
    assert by_category["unanswerable"]["refusal_rate"] == 0.5
    assert by_category["unanswerable"]["recall_at_k"] is None


def test_metrics_by_language_pair(report: dict[str, Any]) -> None:
    by_pair = report["metrics"]["by_language_pair"]
    # "Where was the company founded?" has no `lang`: its language is detected.
    assert set(by_pair) == {"fr→fr", "en→fr", "en→en", "fr→en+fr"}
    assert by_pair["en→fr"]["items"] == 2 and by_pair["en→fr"]["recall_at_k"] == 0.5
    assert by_pair["fr→fr"]["items"] == 2  # one answerable, one unanswerable (question language both sides)
    assert by_pair["fr→fr"]["refusal_rate"] == 1.0 and by_pair["fr→fr"]["answer_correctness"] == 1.0
    assert by_pair["en→en"]["refusal_rate"] == 0.0 and by_pair["en→en"]["answer_correctness"] == 1.0
    assert set(HEADLINE) <= set(by_pair["fr→en+fr"])
    assert [r["language_pair"] for r in report["items"]][:4] == ["fr→fr", "en→fr", "en→en", "fr→en+fr"]


def test_intervals_bracket_the_estimate_and_repeat(report: dict[str, Any]) -> None:
    metrics = report["metrics"]
    assert set(metrics["intervals"]) == set(HEADLINE)
    for name, interval in metrics["intervals"].items():
        low, high = interval
        assert low <= metrics[name] <= high, name
    assert metrics["intervals"]["recall_at_k"][0] < metrics["recall_at_k"]  # a real spread, not a point
    assert bootstrap_intervals(report["items"]) == metrics["intervals"]


def test_intervals_of_an_unmeasurable_metric_are_none(report: dict[str, Any]) -> None:
    answerable_only = [r for r in report["items"] if r["answerable"]]
    intervals = bootstrap_intervals(answerable_only)
    assert intervals["refusal_rate"] is None
    assert intervals["answer_correctness"] is not None


def test_split_by_id_parity(question_file: Path) -> None:
    items = load_items(question_file)
    assert [i.id for i in select_split(items, "even")] == ["t-002", "t-004", "t-006"]
    assert [i.id for i in select_split(items, "odd")] == ["t-001", "t-003", "t-005"]
    assert len(select_split(items, "all")) == 7
    assert EvalItem.from_json({"id": "d2-017", "question": "q", "lang": "en"}).number() == 17


def test_history_csv_is_appended_and_printed(tmp_path: Path, report: dict[str, Any]) -> None:
    path = tmp_path / "data" / "eval_history.csv"
    assert format_history(path) is None
    append_history(path, report, "set.jsonl", "all")
    append_history(path, report, "set.jsonl", "odd")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["split"] for r in rows] == ["all", "odd"]
    assert rows[0]["questions"] == "set.jsonl" and rows[0]["generator"] == "fake" and rows[0]["items"] == "7"
    assert float(rows[0]["recall_at_k"]) == report["metrics"]["recall_at_k"]
    lines = format_history(path).splitlines()
    assert len(lines) == 3 and lines[0].split()[:5] == ["timestamp", "questions", "split", "generator", "items"]
    assert lines[0].index("recall_at_k") + len("recall_at_k") == lines[1].index("0.8") + len("0.8")  # aligned


class FakeService:
    """Replaces RagService in the CLI: records what `ask` receives and answers from ANSWERS."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, settings) -> None:
        pass

    def ask(self, question: str, **options: Any) -> Answer:
        FakeService.calls.append({"question": question, **options})
        return ANSWERS[question.split()[0]]


def test_cli_eval_json_split_and_history(
    tmp_path: Path, question_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rag.service

    data_dir = tmp_path / "data"
    monkeypatch.chdir(tmp_path)  # no project .env
    monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
    monkeypatch.setattr(rag.service, "RagService", FakeService)
    FakeService.calls = []

    assert cli.main(["eval", "--history"]) == 0
    assert "no evaluation history yet" in capsys.readouterr().out

    assert cli.main(["eval", str(question_file), "--json", "--split", "odd", "--generator", "extractive"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in report["items"]] == ["t-001", "t-003", "t-005"]
    assert {"by_category", "by_language_pair", "intervals", "recall_at_k", "refusal_rate"} <= set(report["metrics"])
    follow_up = next(c for c in FakeService.calls if c["question"].startswith("And"))
    assert follow_up["history"] == HISTORY and follow_up["generator"] == "extractive"

    assert cli.main(["eval", "--history"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 and "set.jsonl" in table[1] and " odd " in table[1]
    assert (data_dir / "eval_history.csv").exists()

    assert cli.main(["eval"]) == 2
    assert cli.main(["eval", str(question_file), "--history"]) == 2


def test_an_answer_with_a_claim_and_the_refusal_counts_as_contradictory() -> None:
    assert claims_beside_refusal("Low cost and large capabilities [1]. The documents do not contain the answer.")
    assert claims_beside_refusal("DeepSeek a été lancé fin janvier [2]. Les documents ne le précisent pas.")
    assert not claims_beside_refusal("The documents do not contain the answer to this question.")
    assert not claims_beside_refusal("It was launched at the end of January 2025 [1].")


def test_contradictory_answers_and_withheld_sentences_left_in_the_text_are_counted() -> None:
    item = EvalItem.from_json(
        {
            "id": "t-1",
            "question": "When?",
            "answer": "January",
            "answerable": True,
            "source": "a.txt",
            "evidence": "launched in January",
        }
    )
    shown = "Launched in January. It cost 6 million. The documents do not say."
    invented = [UnsupportedSentence(text="It cost 6 million.")]
    answers = [
        Answer(answer=shown, unsupported=invented, language="en"),
        Answer(answer="Launched in January.", unsupported=invented, language="en"),
    ]
    metrics = summarise([score_item(item, answer) for answer in answers])
    assert metrics["contradictory_answers"] == 1 and metrics["unsupported_in_text"] == 1


def test_evidence_shown_counts_a_span_whose_sentence_reaches_the_prompt_from_its_own_document() -> None:
    """An excerpt showing one sentence of a long span shows the evidence; the same words from another document,
    or a fragment of under four words, do not."""
    span = "The model was trained on 14.8 trillion tokens. It cost 5.6 million dollars to train."
    item = EvalItem(
        id="x-1", question="q?", answer="a", sources=["a.md", "b.md"], evidence=[span, "Paris"], answerable=True
    )
    assert evidence_shown(item, [("corpus/a.md", "… It cost 5.6 million dollars to train. Then …")]) == 0.5
    assert evidence_shown(item, [("corpus/c.md", "It cost 5.6 million dollars to train.")]) == 0.0
    assert evidence_shown(item, [("a.md", "trained on"), ("b.md", "in Paris")]) == 0.5


def test_a_yes_no_answer_is_correct_only_with_the_gold_answers_yes_or_no() -> None:
    """ "Yes, the controls are working" holds every key term of "No, the controls are not working"."""
    asked = {
        "id": "t-1",
        "question": "Are the export controls working?",
        "answer": "No, the export controls do not seem to be working.",
        "answerable": True,
        "source": "a.txt",
        "evidence": "export controls do not seem to be working",
    }
    item = EvalItem.from_json(asked)
    said = {
        text: score_item(item, Answer(answer=text, language="en"))["correct"]
        for text in (
            "Yes, the export controls seem to be working.",
            "No: the export controls do not seem to be working.",
            "The export controls do not seem to be working.",
        )
    }
    assert said == {
        "Yes, the export controls seem to be working.": False,
        "No: the export controls do not seem to be working.": True,
        "The export controls do not seem to be working.": False,  # a yes/no question is answered yes or no first
    }
    fact = EvalItem.from_json({**asked, "answer": "The export controls."})  # a gold answer without yes or no
    assert score_item(fact, Answer(answer="Yes, the export controls.", language="en"))["correct"]
