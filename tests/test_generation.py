"""What the generator is shown, and how a looping model is stopped (real embedder, no LLM)."""

from __future__ import annotations

from rag.citations import Attributor, build_passage_sentences
from rag.generation import format_context, select_excerpts, until_repetition
from rag.schema import Passage


def passage(n: int, text: str, language: str) -> Passage:
    return Passage(
        n=n,
        chunk_id=f"c{n}",
        source=f"doc{n}.md",
        title=f"Doc {n}",
        start=0,
        end=len(text),
        text=text,
        score=1.0,
        language=language,
    )


def test_the_most_relevant_passage_comes_first_and_far_off_ones_are_left_out(embedder):
    passages = [
        passage(1, "The Eiffel Tower is 330 metres tall. It was built for the 1889 World's Fair.", "en"),
        passage(2, "Gustave Eiffel's company designed and built the tower between 1887 and 1889.", "en"),
        passage(3, "La tour Eiffel mesure 330 mètres de haut. Elle a été construite pour l'Exposition de 1889.", "fr"),
        passage(4, "Photosynthesis converts light energy into chemical energy in plants.", "en"),
    ]
    question = "Who built the Eiffel Tower?"
    sentences = build_passage_sentences(embedder, passages)
    excerpts = select_excerpts(sentences, embedder.encode([question], "query")[0], "en")
    shown = [e.index for e in excerpts]
    assert shown[0] == 1  # retrieval put it second; its sentence answers the question
    assert 3 not in shown  # off topic: not worth a prompt token
    context = format_context(passages, excerpts)
    assert context.startswith("[1] (Doc 2) Gustave Eiffel")  # labels follow the prompt order


def test_excerpts_keep_to_the_character_budget(embedder):
    text = " ".join(f"DeepSeek sentence number {i} talks about the R1 model and its training." for i in range(30))
    passages = [passage(1, text, "en")]
    sentences = build_passage_sentences(embedder, passages)
    excerpts = select_excerpts(sentences, embedder.encode(["R1 training"], "query")[0], "en", max_chars=200)
    assert excerpts and len(excerpts[0].text) <= 200 + 10  # the "…" between non-adjacent sentences


def test_a_looping_model_is_stopped():
    looping = iter(["La CNIL recommande", " de respecter les conditions :"] + [" respecter les conditions"] * 50)
    text = "".join(until_repetition(looping))
    assert text.count("respecter les conditions") <= 3
    fine = ["DeepSeek a été lancé", " fin janvier 2025", "."]
    assert "".join(until_repetition(iter(fine))) == "DeepSeek a été lancé fin janvier 2025."


LONG_SENTENCE = (
    "Un défi plus urgent est la protection des données et en particulier le règlement général sur la protection "
    "des données (RGPD) de l'Union européenne (UE), comme l'illustre l'interdiction de DeepSeek par l'Italie le "
    "30 janvier pour des raisons de transfert de données."
)


def test_clause_vectors_are_computed_once_and_shared_with_attribution(embedder):
    passages = [passage(1, "DeepSeek a été lancé fin janvier 2025.", "fr"), passage(2, LONG_SENTENCE, "fr")]
    sentences = build_passage_sentences(embedder, passages)
    question = embedder.encode(["Quand l'Italie a-t-elle interdit DeepSeek ?"], "query")[0]
    select_excerpts(sentences, question, "fr", encoder=embedder)
    assert len(sentences[1].clauses[0]) == 2  # the long sentence, scored by its clauses too
    assert sentences[0].clauses[0] == []  # a short one has none
    before = embedder.texts_embedded
    result = Attributor(embedder, sentences, language="fr").attribute("L'Italie a interdit DeepSeek le 30 janvier.")
    assert result.supported and embedder.texts_embedded == before + 1  # the claim only: no clause encoded again
