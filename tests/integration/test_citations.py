"""Citation attribution and honest streaming, with LangChain's fake chat models and the real embedder."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.citations import (
    AttributionConfig,
    Attributor,
    CitationStreamer,
    attribute_answer,
    build_passage_sentences,
    claim_of,
    clause_spans,
    is_refusal,
    says_documents_are_silent,
    strip_markers,
)
from rag.evaluation import claims_beside_refusal
from rag.generation import ChatGenerator, Excerpt, GenerationRequest
from rag.schema import Passage

ITALY = (
    "Les problèmes de sécurité des données sont un autre sujet. Cela est déjà devenu une réalité, comme "
    "l'illustre l'interdiction de DeepSeek par l'Italie le 30 janvier pour des raisons de transfert de données."
)
O1 = (
    "Le grand modèle de langage R1 de DeepSeek a prétendu surpasser le célèbre modèle o1 d'OpenAI avec un "
    "investissement beaucoup plus petit."
)
REFUSAL = "Les documents ne contiennent pas la réponse à cette question."
H800 = "All DeepSeek-V3/R1 inference services are served on H800 GPUs with precision consistent with training."


def passage(n: int, text: str, source: str, start: int = 100) -> Passage:
    return Passage(
        n=n, chunk_id=f"c{n}", source=source, title=source, start=start, end=start + len(text), text=text, score=1.0
    )


@pytest.fixture
def passages() -> list[Passage]:
    return [
        passage(1, ITALY, "article.txt", 1000),
        passage(2, O1, "article.txt", 200),
        passage(3, H800, "inference.md", 50),
    ]


def run_fake_model(answer: str, passages, embedder, drop_unsupported: bool = False):
    """Stream `answer` through a fake LangChain chat model and the citation streamer."""
    generator = ChatGenerator("fake", GenericFakeChatModel(messages=iter([AIMessage(content=answer)])))
    sentences = build_passage_sentences(embedder, passages)
    request = GenerationRequest("q", "fr", passages, sentences, embedder.encode(["q"], "query")[0], excerpts=[])
    request.excerpts = [Excerpt(i, p.text) for i, p in enumerate(passages)]
    streamer = CitationStreamer(Attributor(embedder, sentences), refusal=REFUSAL, drop_unsupported=drop_unsupported)
    events = []
    for token in generator.stream(request):
        events += list(streamer.feed(token))
    events += list(streamer.finish())
    return streamer.result(), events


def streamed_text(events) -> str:
    return "".join(e.text for e in events if e.type == "token")


def test_sentence_gets_the_passage_that_supports_it_whatever_bracket_the_model_wrote(passages, embedder):
    answer = (
        "L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données [3]. "
        "DeepSeek affirme que R1 surpasse le modèle o1 d'OpenAI [1]."
    )
    result, events = run_fake_model(answer, passages, embedder)
    assert [c.chunk_id for c in result.citations] == ["c1", "c2"]
    assert result.text == (
        "L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données. [1] "
        "DeepSeek affirme que R1 surpasse le modèle o1 d'OpenAI. [2]"
    )
    italy = result.citations[0]
    assert "interdiction de DeepSeek par l'Italie" in italy.quote
    # the quote offsets place it in the document: passage starts at 1000 in its document
    assert italy.quote_start == 1000 + ITALY.index(italy.quote)
    assert italy.quote_end - italy.quote_start == len(italy.quote)
    assert streamed_text(events) == result.text
    assert result.unsupported == [] and not result.refused


def test_unknown_numbers_vanish_and_markers_are_renumbered_by_first_appearance(passages, embedder):
    answer = "Les services d'inférence tournent sur des GPU H800 [9]. R1 prétend surpasser o1 d'OpenAI [2][5]."
    result, events = run_fake_model(answer, passages, embedder)
    assert "[9]" not in result.text and "[5]" not in result.text
    assert [(c.n, c.chunk_id) for c in result.citations] == [(1, "c3"), (2, "c2")]
    assert result.text.index("[1]") < result.text.index("[2]")
    assert streamed_text(events) == result.text


def test_english_sentence_is_attributed_to_the_french_passage(passages, embedder):
    result, _ = run_fake_model("Italy banned DeepSeek on 30 January over data transfers.", passages, embedder)
    assert [c.chunk_id for c in result.citations] == ["c1"]


def test_unsupported_sentence_is_flagged_and_can_be_dropped(passages, embedder):
    answer = "L'Italie a interdit DeepSeek le 30 janvier. La tour Eiffel mesure trois cent trente mètres de haut."
    kept, events = run_fake_model(answer, passages, embedder)
    assert [s.text for s in kept.unsupported] == ["La tour Eiffel mesure trois cent trente mètres de haut."]
    assert "Eiffel" in kept.text and streamed_text(events) == kept.text
    dropped, events = run_fake_model(answer, passages, embedder, drop_unsupported=True)
    assert "Eiffel" not in dropped.text and dropped.unsupported == kept.unsupported
    assert streamed_text(events) == dropped.text
    assert dropped.text.startswith("L'Italie a interdit DeepSeek le 30 janvier.")


def test_markers_split_across_tokens_never_leak_into_the_stream(passages, embedder):
    attributor = Attributor.for_passages(embedder, passages)
    streamer = CitationStreamer(attributor, refusal=REFUSAL)
    tokens = ["R1 prétend", " surpasser le modèle", " o1 d'OpenAI", " [", "2", "]", ".", " Les GPU", " H800 [", "3]."]
    events = [e for t in tokens for e in streamer.feed(t)] + list(streamer.finish())
    text = streamed_text(events)
    assert text == streamer.result().text
    assert "[" not in text.replace("[1]", "").replace("[2]", "")
    # each sentence's markers follow it as soon as it is complete: before the next sentence's text
    first_marker = next(i for i, e in enumerate(events) if e.type == "citations")
    assert "GPU" not in "".join(e.text for e in events[:first_marker] if e.type == "token")


def test_refusal_has_no_citations(passages, embedder):
    result, _ = attribute_answer(
        Attributor.for_passages(embedder, passages), "Les documents ne contiennent pas la réponse.", refusal=REFUSAL
    )
    assert result.refused and result.citations == []
    assert result.text == "Les documents ne contiennent pas la réponse."


def test_an_answer_no_passage_supports_becomes_a_refusal(passages, embedder):
    """A model that invents (here, a fine the documents never mention) is caught by verification."""
    result, events = run_fake_model(
        "L'autorité italienne a infligé une amende de 15 millions d'euros.", passages, embedder
    )
    assert result.refused and result.citations == []
    assert result.unsupported == []  # a refusal lists nothing as an answer
    assert result.text.endswith(REFUSAL)
    assert streamed_text(events) == result.text


def test_a_refused_answer_shows_only_the_refusal_and_lists_what_it_withheld(passages, embedder):
    """Issue 11: an invented claim never reaches the user, not even under the refusal banner."""
    invented = "L'autorité italienne a infligé une amende de 15 millions d'euros."
    result, events = run_fake_model(invented, passages, embedder, drop_unsupported=True)
    assert result.refused and result.text == REFUSAL and streamed_text(events) == REFUSAL
    assert [s.text for s in result.unsupported] == [invented] and result.citations == []
    assert result.unsupported[0].verdict == "not_supported"


def test_a_verified_claim_is_never_followed_by_the_models_refusal(passages, embedder):
    answer = "L'Italie a interdit DeepSeek le 30 janvier. Les documents ne précisent pas le montant de l'amende."
    result, events = run_fake_model(answer, passages, embedder, drop_unsupported=True)
    assert not result.refused and not is_refusal(result.text) and streamed_text(events) == result.text
    assert result.text.startswith("L'Italie a interdit DeepSeek le 30 janvier.") and result.citations
    assert result.unsupported == []  # "the documents don't say" is no claim to list


@pytest.mark.parametrize(
    "answer",
    [
        f"Non. {REFUSAL}",  # a bare "No" is no claim until a sentence says what: with a refusal, it is none
        f"C'est exact. {REFUSAL}",  # a fragment too short to verify goes out only beside verified text
        "Non, les passages ne disent pas que l'Italie a interdit DeepSeek le 30 janvier.",  # reads like passage 1
        "No. The documents do not say that Italy banned DeepSeek on 30 January.",
        # one document, a singular verb: the same refusal ("ne mentionne pas" was read as a claim, and cited)
        "Le document 1 ne mentionne pas la date à laquelle l'Italie a interdit DeepSeek.",
        "The article doesn't say when Italy banned DeepSeek.",
    ],
)
def test_no_followed_by_the_documents_silence_is_a_refusal_and_nothing_else(passages, embedder, answer):
    """A small model asked for yes or no first answers "No, the passages do not say X": the user must read a
    refusal, not a "No" beside it, nor X with a citation under it (X is what passage 1 states)."""
    result, events = run_fake_model(answer, passages, embedder, drop_unsupported=True)
    assert result.refused and result.text == REFUSAL and streamed_text(events) == REFUSAL
    assert result.citations == [] and result.unsupported == []
    assert not claims_beside_refusal(result.text)


def test_one_documents_silence_is_a_refusal_and_a_negative_claim_about_the_world_is_not():
    assert says_documents_are_silent("Le document index 1 ne mentionne pas la durée de l'entraînement.")
    assert says_documents_are_silent("L'article n'indique pas quand l'Italie a interdit DeepSeek.")
    assert says_documents_are_silent("The article doesn't say when Italy banned DeepSeek.")
    for claim in ("Le modèle ne contient pas de données personnelles.", "L'AI Act ne donne pas de délai unique."):
        assert not says_documents_are_silent(claim) and not is_refusal(claim)


def test_the_documents_silence_is_no_claim_even_beside_a_passage_that_negates_too(embedder):
    """Both sides negate, so the negation rule sees no opposition and similarity alone would cite the passage under
    "the passages do not say that …": it is the model's refusal, shown as one."""
    optimisation = passage(1, "L'optimisation n'éliminera pas la nécessité de créer de nouveaux LLM.", "article.txt")
    answer = "Non. Les passages ne disent pas que l'optimisation éliminera la nécessité de créer de nouveaux LLM."
    result, events = run_fake_model(answer, [optimisation], embedder, drop_unsupported=True)
    assert result.refused and result.text == REFUSAL and streamed_text(events) == REFUSAL


def test_a_bare_yes_goes_out_with_the_sentence_that_says_what(passages, embedder):
    answer = "Oui. L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données."
    result, events = run_fake_model(answer, passages, embedder, drop_unsupported=True)
    assert not result.refused and streamed_text(events) == result.text
    assert result.text == f"{answer} [1]" and len(result.citations) == 1


def test_a_fragment_too_short_to_verify_goes_out_with_verified_text(passages, embedder):
    answer = "C'est exact. L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données."
    result, events = run_fake_model(answer, passages, embedder, drop_unsupported=True)
    assert not result.refused and streamed_text(events) == result.text == f"{answer} [1]"


def test_a_bare_yes_before_a_withheld_claim_is_withheld_with_it(passages, embedder):
    invented = "L'autorité italienne a infligé une amende de 15 millions d'euros."
    result, events = run_fake_model(f"Oui. {invented}", passages, embedder, drop_unsupported=True)
    assert result.refused and result.text == REFUSAL and streamed_text(events) == REFUSAL
    assert [s.text for s in result.unsupported] == [f"Oui. {invented}"]


def test_strip_markers_reads_hints():
    text, hinted = strip_markers("A [1, 3]. B [Passage 2]. C[4][5].")
    assert text == "A. B. C."
    assert hinted == {1, 2, 3, 4, 5}


def test_a_figure_the_passage_does_not_state_is_not_supported(passages, embedder):
    """Close wording, wrong date: the embeddings alone would call it supported."""
    attributor = Attributor.for_passages(embedder, passages)
    wrong = attributor.attribute("L'Italie a interdit DeepSeek le 14 février pour des raisons de transfert de données.")
    right = attributor.attribute("L'Italie a interdit DeepSeek le 30 janvier pour des raisons de transfert de données.")
    assert not wrong.supported
    assert right.supported and right.citations


def test_reporting_frame_is_not_part_of_the_claim(passages, embedder):
    """ "The article states that..." says where a claim comes from; the claim alone is compared."""
    assert claim_of("According to the French article, R1 beat o1.") == "R1 beat o1."
    assert claim_of("Les passages 1 et 2 montrent que Washington enquête.") == "Washington enquête."
    assert claim_of("Source code is released under MIT.") == "Source code is released under MIT."
    attributor = Attributor.for_passages(embedder, passages)
    framed = attributor.attribute("Le passage 3 indique que les services d'inférence tournent sur des GPU H800.")
    assert framed.supported and [index for index, _, _ in framed.citations] == [2]


def test_a_second_passage_saying_the_same_thing_is_not_cited(embedder):
    readme = passage(1, "This code repository and the model weights are licensed under the MIT License.", "r1.md")
    wiki = passage(2, "In January 2025, DeepSeek released the DeepSeek-R1 model under the MIT License.", "wiki.md")
    attributor = Attributor(
        embedder,
        build_passage_sentences(embedder, [readme, wiki]),
        question="Under which licence are the DeepSeek-R1 code repository and model weights released?",
    )
    result = attributor.attribute("The DeepSeek-R1 code repository and weights are released under the MIT License.")
    assert result.supported and [index for index, _, _ in result.citations] == [0]


def test_a_long_sentence_supports_a_restated_clause_across_languages(embedder):
    """The claim restates one clause of a long French sentence; an English sentence of the same shape (a date,
    DeepSeek, an event) must not win the citation."""
    article = passage(
        1,
        "Un défi plus urgent est la protection des données et en particulier le règlement général sur la "
        "protection des données (RGPD) de l'Union européenne (UE), comme l'illustre l'interdiction de DeepSeek "
        "par l'Italie le 30 janvier pour des raisons de transfert de données.",
        "article.txt",
    ).model_copy(update={"language": "fr"})
    wiki = passage(2, "On 21 August 2025, DeepSeek released DeepSeek V3.1 under the MIT License.", "wiki.md")
    wiki = wiki.model_copy(update={"language": "en"})
    attributor = Attributor(embedder, build_passage_sentences(embedder, [article, wiki]), language="en")
    result = attributor.attribute("Italy banned DeepSeek on January 30, 2025, due to concerns about data transfer.")
    assert result.supported and [index for index, _, _ in result.citations] == [0]


def test_clauses_only_for_long_sentences():
    short = "DeepSeek, a Chinese start-up, released R1."
    assert clause_spans(short, 0, len(short)) == []
    long = (
        "Un défi plus urgent est la protection des données et en particulier le règlement général sur la "
        "protection des données (RGPD) de l'Union européenne (UE), comme l'illustre l'interdiction de DeepSeek "
        "par l'Italie le 30 janvier pour des raisons de transfert de données."
    )
    pieces = [long[s:e] for s, e in clause_spans(long, 0, len(long))]
    assert len(pieces) == 2 and pieces[1].startswith("comme l'illustre")


def test_a_figure_is_cited_to_the_passage_that_states_it(embedder):
    full = passage(
        1,
        "Despite its excellent performance, DeepSeek-V3 requires only 2.788M H800 GPU hours for its full training.",
        "v3.md",
    )
    pre = passage(
        2,
        "At an economical cost of only 2.664M H800 GPU hours, we complete the pre-training of DeepSeek-V3 on 14.8T "
        "tokens, producing the currently strongest open-source base model.",
        "v3.md",
    )
    attributor = Attributor(embedder, build_passage_sentences(embedder, [pre, full]), language="fr")
    result = attributor.attribute("L'entraînement complet a demandé 2.788M heures GPU H800.")
    assert result.supported and [index for index, _, _ in result.citations] == [1]


def test_a_claim_restating_the_question_needs_its_terms_in_the_passage(embedder):
    """On topic is not enough: only the question spoke of an intelligence law and of cooperating."""
    laws = passage(
        1,
        "De plus, DeepSeek — comme toute entreprise chinoise d'IA — doit certainement se conformer aux lois et "
        "réglementations strictes de Pékin en matière de sécurité nationale.",
        "article.txt",
    ).model_copy(update={"language": "fr"})
    question = (
        "Quel article de la loi chinoise sur le renseignement oblige les entreprises comme DeepSeek à coopérer "
        "avec les services de l'État ?"
    )
    attributor = Attributor(embedder, build_passage_sentences(embedder, [laws]), question=question, language="fr")
    echo = "La loi chinoise sur le renseignement oblige les entreprises comme DeepSeek à coopérer avec l'État."
    assert not attributor.attribute(echo).supported
    assert attributor.attribute("DeepSeek doit se conformer aux lois de Pékin sur la sécurité nationale.").supported
    # the check, not the embeddings, is what refuses the echo
    lenient = Attributor(
        embedder,
        build_passage_sentences(embedder, [laws]),
        AttributionConfig(echo_min_terms=99),
        question=question,
        language="fr",
    )
    assert lenient.attribute(echo).supported


def test_the_prompts_numbering_in_the_answer_is_no_invented_figure(passages, embedder):
    """ "… selon le document 1" names a position in the prompt, not a figure a passage has to state."""
    answer = "Oui, le document 1 affirme que l'Italie a interdit DeepSeek pour des raisons de transfert de données."
    result, _ = run_fake_model(answer, passages, embedder, drop_unsupported=True)
    assert not result.refused and [c.chunk_id for c in result.citations] == ["c1"]
