"""The second stage of citation checking (issue 11): each failure mode from a small fixture, first on the rules
alone, then through the citation streamer with a fake chat model and the real e5 embedder. Each end-to-end case
also runs with the similarity stage alone, which lets the bad sentence through: the test can fail."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.citations import Attributor, CitationStreamer, build_passage_sentences, is_question
from rag.generation import DENIALS, ChatGenerator, Excerpt, GenerationRequest
from rag.names import grounded_names
from rag.schema import Passage
from rag.verification import MeaningRules, SimilarityOnly, negated

RULES = MeaningRules()
REVENUE_AND_PARAMETERS_FR = "Le modèle compte 671 milliards de paramètres, dont 37 milliards activés par token."


@pytest.mark.parametrize(
    ("claim", "quote", "question"),
    [
        # a hedge in the source, the claim states the opposite, across languages
        ("DeepSeek is easy to compare with other models.", "DeepSeek est difficilement comparable.", "Is it easy?"),
        # "yes" is a claim: here it contradicts the rest of its own sentence
        (
            "Yes, DeepSeek is hardly comparable to other models.",
            "DeepSeek est difficilement comparable.",
            "Is it easy to compare DeepSeek?",
        ),
        # the claim affirms what the source denies
        (
            "DeepSeek had access to the most advanced chips.",
            "DeepSeek n'avait pas accès aux puces les plus avancées.",
            "q",
        ),
        ("DeepSeek a eu accès aux puces.", "DeepSeek did not have access to the chips.", "q"),
        # what a negation denies is read without its elision: "sans décision d'adéquation" denies "adequate"
        (
            "Oui, sans décision d'adéquation, un transfert peut reposer sur le consentement.",
            "A transfer may take place where the Commission has decided that the country ensures an adequate level of "
            "protection.",
            "Sans décision d'adéquation, un transfert peut-il reposer sur le consentement ?",
        ),
        # a plain "yes" where the source allows it only under a condition
        (
            "Yes, a court judgment may force a transfer of personal data.",
            "A judgment requiring a transfer may only be recognised if based on an international agreement.",
            "Can a court judgment force a transfer?",
        ),
        # a figure the source gives to another name of the same sentence
        ("Qwen2.5 scores 88.5 on MMLU.", "On MMLU, DeepSeek-V3 scores 88.5 while Qwen2.5 scores 85.3.", "q"),
        # the same, in French: a decimal comma is inside the figure, a name ends before the full stop
        ("Sur MMLU, Qwen2.5 obtient 88,5.", "Sur MMLU, DeepSeek-V3 obtient 88,5, contre 85,3 pour Qwen2.5.", "q"),
        # a comparison the source makes the other way, across languages
        (
            "Oui, R1 consomme davantage d'énergie que ses concurrents américains.",
            "R1 appears to consume much less energy than its American competitors.",
            "Est-ce que R1 consomme davantage d'énergie ?",
        ),
        ("Yes, R1 uses less energy.", "R1 uses less energy.", "Does R1 use more energy than its rivals?"),
        # "not only X" denies "only X", in either direction and across languages
        (
            "Oui, la compétition en IA concerne seulement des fins commerciales.",
            "La compétition en matière d'IA ne concerne pas seulement des fins commerciales, mais également des "
            "considérations géopolitiques.",
            "La compétition en IA concerne-t-elle seulement des fins commerciales ?",
        ),
        ("AI competition is only about commercial ends.", "Cela ne concerne pas seulement des fins commerciales.", "q"),
        ("Ce n'est pas seulement commercial.", "It is only commercial.", "q"),
        # a figure given for what the quote measures with its other figure (a common noun, not a name)
        (
            "The cost profit margin is 562,027 dollars.",
            "If all tokens were billed at R1's pricing, the total daily revenue would be $562,027, with a cost profit "
            "margin of 545%.",
            "q",
        ),
        ("Le modèle active 671 milliards de paramètres par token.", REVENUE_AND_PARAMETERS_FR, "q"),
        # an elided article after the negation is no content word and takes none of its scope's three places
        ("Le texte évoque une agence fédérale.", "Le texte ne parle pas d'une autorité centrale fédérale.", "q"),
    ],
)
def test_rules_see_what_similarity_cannot(claim: str, quote: str, question: str) -> None:
    assert RULES.verify(claim, quote, question=question).verdict == "contradicted"


@pytest.mark.parametrize(
    ("claim", "quote", "question"),
    [
        ("No, DeepSeek is hard to compare with other models.", "DeepSeek est difficilement comparable.", "Is it easy?"),
        (
            "DeepSeek had no access to the most advanced chips.",
            "DeepSeek n'avait pas accès aux puces les plus avancées.",
            "q",
        ),
        # a negative question is answered without repeating its negation
        (
            "Because of American export controls.",
            "sans accès aux puces les plus avancées en raison des contrôles à l'exportation américains",
            "Pourquoi DeepSeek n'a-t-il pas eu accès aux puces les plus avancées ?",
        ),
        # a negation about something else in the quote
        (
            "R1 tried to hack the game in 11% of games.",
            "R1 l'a fait dans 11% des parties, sans aucune incitation.",
            "q",
        ),
        (
            "Yes, but only if it is based on an international agreement.",
            "It may only be recognised if based on an international agreement.",
            "q",
        ),
        ("DeepSeek-V3 scores 88.5 on MMLU.", "On MMLU, DeepSeek-V3 scores 88.5 while Qwen2.5 scores 85.3.", "q"),
        # a thousands separator is inside the figure, not between two clauses
        (
            "DeepSeek-R1 reaches a Codeforces rating of 2,029 Elo.",
            "DeepSeek-R1 achieves a 2,029 Elo rating on Codeforces.",
            "q",
        ),
        # "in the absence of" is "without": both texts state the same lack
        (
            "Sans décision d'adéquation, un transfert peut reposer sur le consentement explicite.",
            "In the absence of an adequacy decision, the data subject has explicitly consented to the transfer.",
            "q",
        ),
        # a negation reaches no further than its clause: "ni garanties appropriées" does not deny the transfer
        (
            "Un transfert vers un pays tiers peut reposer sur le consentement explicite de la personne.",
            "Sans décision d'adéquation ni garanties appropriées, un transfert vers un pays tiers peut reposer sur le "
            "consentement explicite de la personne.",
            "q",
        ),
        # a negated denial or doubt affirms (litotes), in either language
        (
            "The author concedes that DeepSeek's success has positive aspects.",
            "Bien que l'on ne puisse nier les aspects positifs du succès de DeepSeek, ce modèle présente également des "
            "inconvénients.",
            "q",
        ),
        ("R1 is cheap.", "It cannot be denied that R1 is cheap.", "q"),
        ("R1 est bon marché.", "R1 est sans aucun doute bon marché.", "q"),
        # a year beside a name dates the statement; it is no figure of that name
        ("France had 8 projects.", "In 2023, France had 8 projects and Germany 5.", "q"),
        (
            "The EU failed to build its own AI platform.",
            "Le bloc n'a pas réussi à créer sa propre plateforme d'IA.",
            "q",
        ),
        # digits inside identifiers ("pass@1", "o1-0912") are names, not figures bound to a name
        (
            "The AIME 2024 pass@1 of R1-Zero climbs from 15.6% to 71.0%.",
            "The pass@1 score on AIME 2024 shows an increase, from 15.6% to 71.0%, close to OpenAI-o1-0912.",
            "q",
        ),
        # comparisons the same way, or about different things, or fixed phrases that compare nothing
        ("It gives higher throughput and lower latency.", "Its goals: higher throughput and lower latency.", "q"),
        ("R1 uses much less energy.", "R1 consomme beaucoup moins d'énergie.", "Does R1 use more energy?"),
        ("De plus, l'énergie consommée par R1 est faible.", "R1 consomme moins d'énergie.", "q"),  # moreover
        ("R1 consomme au moins un peu d'énergie.", "R1 consumes more energy than before.", "q"),  # at least
        # "not only X but also Y" states X
        (
            "DeepSeek fournit à la Chine la capacité technique de remplacer les plateformes d'IA américaines.",
            "L'importance de DeepSeek pour la Chine n'est pas seulement de fournir la capacité technique de "
            "remplacer les plateformes d'IA fabriquées aux États-Unis, mais aussi de signaler au monde que Pékin "
            "est « très intéressé » par la course à l'IA.",
            "Quelle est l'importance de DeepSeek pour la Chine ?",
        ),
        ("R1 is cheaper.", "R1 is not only cheaper but also faster.", "q"),
        # a figure with what it measures, a figure with no word of its own, and two figures in one clause
        ("Le modèle compte 671 milliards de paramètres.", REVENUE_AND_PARAMETERS_FR, "q"),
        ("671 milliards.", REVENUE_AND_PARAMETERS_FR, "q"),
        ("Il en active 37 sur 671 par token.", REVENUE_AND_PARAMETERS_FR, "q"),
    ],
)
def test_rules_let_true_paraphrases_through(claim: str, quote: str, question: str) -> None:
    assert RULES.verify(claim, quote, question=question).verdict == "supported"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Il y a plus de 100 modèles.", False),  # "plus de" is "more than"
        ("Il n'a que 10 ans.", False),  # "ne … que" is "only"
        ("Il n'est plus là.", True),
        ("Ce modèle est difficilement comparable.", True),
        ("It doesn't work.", True),
        ("La personne a répondu.", False),
        ("Ce n'est pas seulement un outil, mais aussi un signal.", False),  # "not only … but also" adds
        ("Non seulement il est rapide, mais il est bon marché.", False),
        ("It isn't just cheap, it is fast.", False),
        ("Ce n'est pas un outil.", True),
    ],
)
def test_negation_markers(text: str, expected: bool) -> None:
    assert negated(text) is expected


# --- through the streamer, with the real embedder -----------------------------------------------------------
def passage(n: int, chunk_id: str, source: str, language: str, text: str) -> Passage:
    return Passage(
        n=n,
        chunk_id=chunk_id,
        source=source,
        title=source,
        start=0,
        end=len(text),
        text=text,
        score=1.0,
        language=language,
    )


COMPARE = passage(
    1, "c1", "article.txt", "fr", "DeepSeek est difficilement comparable aux autres modèles, faute de données publiées."
)
SCORES = passage(
    2, "c2", "report.md", "en", "On MMLU, DeepSeek-V3 scores 88.5 while Qwen2.5 scores 85.3 and Llama-3.1 scores 88.6."
)
EU = passage(
    3,
    "c3",
    "article.txt",
    "fr",
    "Le bloc n'a pas réussi à créer sa propre plateforme d'IA étant donné l'énorme montant d'investissement "
    "nécessaire.",
)
REFUSAL = "The documents do not contain the answer to this question."


def answer_with(answer: str, question: str, embedder, verifier, denial: str = "", passages=(COMPARE, SCORES, EU)):
    """`answer` streamed by a fake chat model through the citation streamer (withholding, the default)."""
    passages = list(passages)
    generator = ChatGenerator("fake", GenericFakeChatModel(messages=iter([AIMessage(content=answer)])))
    sentences = build_passage_sentences(embedder, passages)
    request = GenerationRequest(question, "en", passages, sentences, embedder.encode([question], "query")[0])
    request.excerpts = [Excerpt(i, p.text) for i, p in enumerate(passages)]
    attributor = Attributor(embedder, sentences, question=question, language="en", verifier=verifier)
    streamer = CitationStreamer(attributor, refusal=REFUSAL, drop_unsupported=True, denial=denial)
    events = [event for token in generator.stream(request) for event in streamer.feed(token)]
    events += list(streamer.finish())
    return streamer.result(), "".join(e.text for e in events if e.type == "token")


@pytest.mark.parametrize(
    ("bad", "question"),
    [
        ("Yes, DeepSeek is easy to compare with other models.", "Is DeepSeek easy to compare with other models?"),
        ("Qwen2.5 scores 88.5 on MMLU.", "What does Qwen2.5 score on MMLU?"),
    ],
    ids=["negation", "figure-of-another-name"],
)
def test_a_contradicted_sentence_is_withheld_with_its_reason(embedder, bad: str, question: str) -> None:
    result, streamed = answer_with(bad, question, embedder, MeaningRules())
    assert result.refused and streamed == result.text == REFUSAL  # no claim beside the refusal
    assert [(s.text, s.verdict) for s in result.unsupported] == [(bad, "contradicted")]
    assert result.unsupported[0].reason
    # The similarity stage alone cites it: only the second stage keeps it from the reader.
    baseline, _ = answer_with(bad, question, embedder, SimilarityOnly())
    assert not baseline.refused and baseline.citations


def test_a_yes_the_passages_deny_becomes_a_no_with_the_quote_that_says_so(embedder) -> None:
    """The documents are not silent on "is it easy to compare?": they say it is hardly comparable. The model's
    "Yes" is withheld, and the answer is "No" in the passage's own words, cited to it."""
    bad, question = (
        "Yes, DeepSeek is easy to compare with other models.",
        "Is DeepSeek easy to compare with other models?",
    )
    result, streamed = answer_with(bad, question, embedder, MeaningRules(), denial=DENIALS["en"])
    assert streamed == result.text == f"No: the documents say “{COMPARE.text}” [1]"
    assert not result.refused and [c.chunk_id for c in result.citations] == ["c1"]
    assert [(s.text, s.verdict) for s in result.unsupported] == [(bad, "contradicted")]
    # No "No" is made up from a "Yes" withheld for what it adds (a figure of another model) rather than because
    # the passage denies what was asked, nor for a negative question, where a bare "No" reads both ways.
    consent = passage(4, "g1", "gdpr.md", "en", "A transfer shall take place only if the data subject has consented.")
    for bad, question in [
        ("Yes, Qwen2.5 scores 88.5 on MMLU.", "Does Qwen2.5 do well on MMLU?"),
        # the quote's "only if" contradicts the plain yes; the question's "without" reads as covering "transfer"
        ("Yes, a transfer can take place with consent.", "Without safeguards, can a transfer rest on consent?"),
    ]:
        passages = (COMPARE, SCORES, EU, consent)
        result, _ = answer_with(bad, question, embedder, MeaningRules(), denial=DENIALS["en"], passages=passages)
        assert result.refused and result.text == REFUSAL
        assert [(s.text, s.verdict) for s in result.unsupported] == [(bad, "contradicted")]


def test_a_true_sentence_beside_a_contradicted_one_is_kept_and_cited(embedder) -> None:
    answer = "DeepSeek-V3 scores 88.5 on MMLU. Qwen2.5 scores 88.5 on MMLU."
    result, streamed = answer_with(answer, "What do the models score on MMLU?", embedder, MeaningRules())
    assert streamed == result.text and result.text.startswith("DeepSeek-V3 scores 88.5 on MMLU.")
    assert "Qwen2.5 scores 88.5" not in result.text and not result.refused
    assert [c.source for c in result.citations] == ["report.md"]
    assert result.citations[0].support.verdict == "supported" and result.citations[0].support.score > 0.7


def test_a_cross_language_paraphrase_is_supported(embedder) -> None:
    """An English answer drawn from French text: almost no shared words, the meaning is the same."""
    claim = "The EU failed to build its own AI platform because of the huge investment required."
    result, streamed = answer_with(claim, "Why has the EU no AI platform of its own?", embedder, MeaningRules())
    assert not result.refused and result.unsupported == [] and streamed.startswith(claim)
    assert [c.chunk_id for c in result.citations] == ["c3"]


SERVING = "All DeepSeek-V3/R1 inference services are served on H800 GPUs with precision consistent with training."
DIVIDE = (
    "Le risque de censure et de transfert de données de DeepSeek ne fera qu’exacerber et accélérer la fracture "
    "dans le secteur mondial de l’IA."
)


@pytest.mark.parametrize(
    ("text", "language", "question", "claim", "supported"),
    [
        # a translation shares cognates with its original ("GPU", "H800"); its cosine alone is 0.84
        (SERVING, "en", "Sur quels GPU tournent les services de DeepSeek ?", "Sur des GPU Nvidia H800.", True),
        # on the same topic, saying something else: cosine 0.86, few cognates ("transfer", "censor")
        (
            DIVIDE,
            "fr",
            "What could deepen the divide in the global AI sector?",
            "The possibility of more limited technology transfers and cooperation with the US, and growing concerns "
            "about data censorship issues coming from China.",
            False,
        ),
    ],
)
def test_across_languages_words_are_compared_as_cognates(
    embedder, text: str, language: str, question: str, claim: str, supported: bool
) -> None:
    """Across languages the cosine alone cannot tell a translation from a sentence on the same topic (both pairs
    here sit around 0.85); the cognates the two sentences share can (pairs of the tuned sets)."""
    sentences = build_passage_sentences(embedder, [passage(1, "x1", "doc.md", language, text)])
    other = "fr" if language == "en" else "en"
    attribution = Attributor(embedder, sentences, question=question, language=other).attribute(claim)
    assert attribution.supported is supported


FAQ = passage(
    1, "f1", "faq.md", "fr", "L'entraînement de DeepSeek-R1 a coûté 5,6 millions de dollars, selon l'entreprise."
)
NEWS = passage(2, "n1", "news.md", "en", "Training DeepSeek-R1 cost about 12 million dollars, according to analysts.")


def answered_with_notes(embedder, passages: list, question: str, answer: str):
    """`answer` through the citation streamer (withholding) with the "sources differ" note on, for an English
    question: the result and the text streamed."""
    attributor = Attributor(embedder, build_passage_sentences(embedder, passages), question=question, language="en")
    streamer = CitationStreamer(
        attributor, refusal=REFUSAL, drop_unsupported=True, conflict_note="The sources differ on this point"
    )
    events = list(streamer.feed(answer)) + list(streamer.finish())
    return streamer.result(), "".join(e.text for e in events if e.type == "token")


def test_two_sources_that_differ_are_both_cited_and_the_answer_says_so(embedder) -> None:
    question = "How much did training DeepSeek-R1 cost?"
    answer = "Training DeepSeek-R1 cost 5.6 million dollars."
    result, streamed = answered_with_notes(embedder, [FAQ, NEWS], question, answer)
    assert streamed == result.text
    assert result.text == "Training DeepSeek-R1 cost 5.6 million dollars. [1] The sources differ on this point [2]."
    first, second = result.citations
    assert (first.source, first.support.verdict) == ("faq.md", "supported")
    assert (second.source, second.support.verdict, second.support.reason) == ("news.md", "differs", "gives 12")


SAMPLED = "For benchmarks requiring sampling, we generate 64 responses per query to estimate pass@1."
README = passage(1, "r1", "readme.md", "en", SAMPLED)
BOUND = (
    "We generate k responses per question (typically between 4 and 64, depending on the test set size) "
    "to estimate pass@1."
)
PAPER = passage(2, "p1", "paper.pdf", "en", BOUND)


def test_a_source_that_uses_the_figure_for_another_measure_is_no_conflict(embedder) -> None:
    """The paper's 64 is a bound on k that depends on the test set, not another count of responses: its quote
    supports nothing (the figure rule), and it does not disagree either, so no "sources differ" note is added."""
    question = "How many responses per query does the README generate to estimate pass@1?"
    claim = "The README generates 64 responses per query to estimate pass@1."
    assert MeaningRules().verify(claim, PAPER.text, question=question).reason == (
        "the source gives this figure for something else"
    )  # the case: before, this verdict made a note
    result, _ = answered_with_notes(embedder, [README, PAPER], question, claim)
    assert result.text == f"{claim} [1]" and [c.source for c in result.citations] == ["readme.md"]


MARKET = (
    "Pour une entreprise chinoise d’IA ayant l’ambition de se développer à l’étranger, et en particulier sur le "
    "lucratif marché américain, les défis commencent vraiment maintenant."
)
EXPORTS = (
    "DeepSeek a démontré que les restrictions américaines sur l'exportation de puces n'empêchent pas l'innovation "
    "chinoise en IA mais stimulent au contraire des approches plus efficientes."
)


def test_a_negation_of_another_word_of_the_sentence_is_no_conflict_of_sources(embedder) -> None:
    """ "n'empêchent pas l'innovation chinoise" denies a hindrance, not what an article says of "une entreprise
    chinoise": the negation's wider reach (three words) still withholds a claim it touches, but a note that the
    sources differ needs the negated word itself to be the one the other source states."""
    passages = [passage(1, "a1", "article.txt", "fr", MARKET), passage(2, "n1", "news.md", "fr", EXPORTS)]
    # asked in English and answered with the article's sentence, as the extractive generator does
    question = "Which foreign market does the article single out as lucrative for Chinese AI firms?"
    assert MeaningRules().verify(MARKET, EXPORTS, question=question).verdict == "contradicted"  # the case
    result, _ = answered_with_notes(embedder, passages, question, MARKET)
    assert result.text == f"{MARKET} [1]" and [c.source for c in result.citations] == ["article.txt"]
    # A negation of the word the other states is a conflict, as before: "hardly comparable" against "comparable".
    check = MeaningRules().verify(
        "DeepSeek est comparable à GPT-4.", "DeepSeek est difficilement comparable à GPT-4.", question=""
    )
    assert check.verdict == "contradicted" and check.disagrees


# --- names and years a passage must state (attribution's first stage, every verifier) -----------------------
LEASING = passage(
    1,
    "l1",
    "deepseek_v3_r1_inference_system_overview_en.md",  # its text never says whose costs: its name does
    "en",
    "Assuming the leasing cost of one H800 GPU is $2 per hour, the total daily cost amounts to $87,072.",
)
FOUNDER = passage(2, "w1", "company.md", "en", "Its co-founder, Liang Wenfeng, serves as CEO of DeepSeek.")


def attribution_of(embedder, sentence: str, question: str):
    sentences = build_passage_sentences(embedder, [LEASING, FOUNDER])
    return Attributor(embedder, sentences, question=question, language="en").attribute(sentence)


@pytest.mark.parametrize(
    ("sentence", "question", "reason"),
    [
        # the question's GPU, the passage's price for another one: a near miss cosine cannot see
        (
            "The hourly leasing cost for an H100 GPU is $2 per hour.",
            "What hourly leasing cost for an H100 does DeepSeek assume?",
            "no passage speaks of H100",
        ),
        (
            "Liang Wenfeng, born in 1981, serves as CEO of DeepSeek.",
            "When was Liang Wenfeng born?",
            "a year neither the passages nor the question state",
        ),
    ],
    ids=["versioned-name", "year"],
)
def test_a_name_or_year_no_passage_states_is_not_supported(embedder, sentence, question, reason) -> None:
    attribution = attribution_of(embedder, sentence, question)
    assert not attribution.supported and attribution.check.reason == reason


@pytest.mark.parametrize(
    ("sentence", "question"),
    [
        ("The leasing cost of one H800 GPU is $2 per hour.", "What hourly leasing cost does DeepSeek assume?"),
        # a year the question gives is restated, not invented
        ("In 2024, Liang Wenfeng served as CEO of DeepSeek.", "Who led DeepSeek in 2024?"),
    ],
)
def test_names_and_years_the_passages_or_question_state_pass(embedder, sentence, question) -> None:
    attribution = attribution_of(embedder, sentence, question)
    assert attribution.supported and attribution.citations


SIZES = passage(
    3,
    "s1",
    "faq.md",
    "fr",
    "Un modèle qui occupait 540 milliards de paramètres en 2022 peut aujourd'hui être égalé par un modèle de 3,8 "
    "milliards de paramètres.",
)
MISTRAL = passage(4, "m1", "mistral.md", "fr", "Mistral Large 2 compte 123 milliards de paramètres.")


@pytest.mark.parametrize(
    ("sentence", "cited"),
    [
        # the question's model, another document's figure: that document never names Mistral
        ("The Mistral Large 2 model has 540 billion parameters.", None),
        ("The Mistral Large 2 model has 123 billion parameters.", "m1"),
        # a figure no name is given in the claim's clause is not held to this
        ("A model of 540 billion parameters in 2022 can be matched today by one of 3.8 billion.", "s1"),
    ],
)
def test_the_passage_must_name_whose_figure_the_claim_gives(embedder, sentence: str, cited: str | None) -> None:
    sentences = build_passage_sentences(embedder, [SIZES, MISTRAL])
    question = "How many parameters does Mistral Large 2 have?"
    attribution = Attributor(embedder, sentences, question=question, language="en").attribute(sentence)
    if cited is None:
        assert not attribution.supported and attribution.check.reason == "no passage gives 540 for Large, Mistral"
    else:
        assert attribution.supported and [SIZES, MISTRAL][attribution.citations[0][0]].chunk_id == cited


def test_grounded_names_are_versioned_names_and_camelcase_names_the_question_lacks() -> None:
    names = grounded_names("DeepSeek-V3 and OpenAI's GPT-4o beat Qwen2.5 on MMLU.", "Does DeepSeek beat Qwen?")
    assert names == {"v3": "V3", "openai": "OpenAI", "qwen2.5": "Qwen2.5"}  # "GPT-4o": "4o" is a figure's


REVIEW = passage(
    1,
    "g1",
    "gdpr.txt",
    "en",
    "The implementing act shall provide for a mechanism for a periodic review, at least every "
    "four years, which shall take into account all relevant developments in the third country.",
)


@pytest.mark.parametrize(
    ("sentence", "supported"),
    [
        ("Un mécanisme de révision périodique a lieu au moins tous les quatre ans.", True),
        ("The decisions are reviewed at least every four years.", True),
        ("Les décisions sont réexaminées au moins tous les deux ans.", False),
        ("The decisions are reviewed at least every two years.", False),
    ],
)
def test_a_quantity_written_in_words_is_a_figure(embedder, sentence: str, supported: bool) -> None:
    """ "deux ans" is a figure the passage must state, as "2 ans" would be; "quatre ans" states its "four years"."""
    sentences = build_passage_sentences(embedder, [REVIEW])
    question = "Tous les combien ces décisions sont-elles réexaminées ?"
    attribution = Attributor(embedder, sentences, question=question, language="fr").attribute(sentence)
    assert attribution.supported is supported
    if not supported:
        assert attribution.check.reason == "a figure no passage states"


DEROGATIONS = passage(
    1,
    "g49",
    "gdpr.txt",
    "en",
    "Points (a), (b) and (c) of the first subparagraph of paragraph 1 and the second subparagraph thereof shall not "
    "apply to activities carried out by public authorities in the exercise of their public powers.",
).model_copy(update={"heading_path": "CHAPTER V – Transfers > Article 49 – Derogations for specific situations"})


@pytest.mark.parametrize(
    ("sentence", "supported"),
    [
        # the article's number is in its heading, which the text under it does not repeat
        (
            "Points (a), (b) and (c) of Article 49(1) do not apply to public authorities acting in the exercise of "
            "their public powers.",
            True,
        ),
        # a number neither the text nor its heading states is still invented
        (
            "Points (a), (b) and (c) of Article 46(1) do not apply to public authorities acting in the exercise of "
            "their public powers.",
            False,
        ),
    ],
)
def test_a_heading_states_the_number_of_its_article(embedder, sentence: str, supported: bool) -> None:
    sentences = build_passage_sentences(embedder, [DEROGATIONS])
    question = "Can a public authority rely on the derogations of GDPR Article 49?"
    attribution = Attributor(embedder, sentences, question=question, language="en").attribute(sentence)
    assert attribution.supported is supported, attribution.check
    if not supported:
        assert attribution.check.reason == "a figure no passage states"


RELEASE = passage(
    1,
    "r1",
    "r1.md",
    "en",
    "We open-source DeepSeek-R1 and six dense models (1.5B, 7B, 8B, 14B, 32B, 70B) distilled from it; "
    "the reinforcement learning of R1-Zero ran for 8 days on the cluster.",
)


@pytest.mark.parametrize(
    ("sentence", "supported"),
    [
        # the passage's "7" counts billions of parameters, not days
        ("L'entraînement par renforcement de R1-Zero a duré 7 jours.", False),
        ("The reinforcement learning of R1-Zero ran for 7 days.", False),
        # the same figures with their own units, in either language, digits or words
        ("L'entraînement par renforcement de R1-Zero a duré 8 jours.", True),
        ("The reinforcement learning of R1-Zero ran for eight days.", True),
        ("DeepSeek a publié six modèles denses distillés de R1, dont un de 7B.", True),
        ("DeepSeek open-sourced six dense models distilled from R1, one of them with 7 billion parameters.", True),
    ],
)
def test_a_figure_must_measure_what_the_passage_measures(embedder, sentence: str, supported: bool) -> None:
    sentences = build_passage_sentences(embedder, [RELEASE])
    attribution = Attributor(embedder, sentences, question="How long did R1-Zero's RL training last?").attribute(
        sentence
    )
    assert attribution.supported is supported, attribution.check
    if not supported:
        assert attribution.check.reason == "a figure the passages give only for something else"


def test_a_question_in_the_answer_is_no_claim(embedder) -> None:
    """The small model sometimes answers with the user's question behind a "Yes": it reads exactly like the passage
    and states nothing."""
    question = "Does DeepSeek assume a leasing cost of $2 per hour for one H800 GPU?"
    echoed = attribution_of(
        embedder, "Yes, does DeepSeek assume a leasing cost of $2 per hour for one H800 GPU ?", question
    )
    assert not echoed.supported and echoed.check.reason == "a question, not an answer"
    answered = attribution_of(
        embedder, "Yes, DeepSeek assumes a leasing cost of $2 per hour for one H800 GPU.", question
    )
    assert answered.supported and answered.citations


@pytest.mark.parametrize(
    ("sentence", "asks"),
    [
        ("Qu'est-ce que DeepSeek ?", True),
        ("**Faut-il poursuivre des objectifs alignés avec le bien humain ?**", True),  # a FAQ heading, markup left
        ('"DeepSeek – Pépite de l’IA chinoise ou menace stratégique ?"', True),
        ("Le rapport demande « faut-il réguler ? »", True),  # reports a question: states no answer either
        ("DeepSeek a été lancé fin janvier 2025.", False),
        ("Is it? No: DeepSeek was launched in January 2025.", False),
    ],
)
def test_a_sentence_asks_when_it_ends_with_a_question_mark_before_closing_marks(sentence: str, asks: bool) -> None:
    assert is_question(sentence) is asks


CODEFORCES = passage(1, "c1", "r1_paper.pdf", "en", "DeepSeek-R1 achieves a 2,029 Elo rating on Codeforces.")


@pytest.mark.parametrize(
    ("sentence", "supported"),
    [
        ("DeepSeek-R1-Zero reaches a Codeforces rating of 2,029 Elo.", False),  # a variant is another model
        ("DeepSeek-R1 reaches a Codeforces rating of 2,029 Elo.", True),
        ("Sur Codeforces, DeepSeek-R1 atteint un classement Elo de 2 029.", True),
    ],
)
def test_a_model_variant_is_another_name(embedder, sentence: str, supported: bool) -> None:
    sentences = build_passage_sentences(embedder, [CODEFORCES])
    question = "What Codeforces rating does DeepSeek-R1-Zero reach?"
    attribution = Attributor(embedder, sentences, question=question).attribute(sentence)
    assert attribution.supported is supported, attribution.check
    if not supported:
        assert attribution.check.reason == "no passage speaks of R1-Zero"


def test_variant_names_are_a_versioned_name_and_the_capitalised_word_after_it() -> None:
    names = grounded_names("Qwen2.5-Math-7B is the base of DeepSeek-R1-Distill-Qwen-7B, a V3-based model.", "")
    assert names["qwen2.5-math"] == "Qwen2.5-Math" and names["r1-distill"] == "R1-Distill"
    assert "v3-based" not in names  # an adjective, not a variant


def test_a_figure_with_a_thousands_separator_is_no_year(embedder) -> None:
    """ "2,029" is a rating a passage must state, not a year that may come from any passage: here only the
    passage on DeepSeek-R1 states it, and it does not speak of R1-Zero."""
    trajectory = passage(
        2,
        "c2",
        "r1_paper.pdf",
        "en",
        "Figure 2 depicts the Codeforces performance trajectory of DeepSeek-R1-Zero throughout the RL training.",
    )
    sentences = build_passage_sentences(embedder, [CODEFORCES, trajectory])
    question = "What Codeforces rating does DeepSeek-R1-Zero reach?"
    attribution = Attributor(embedder, sentences, question=question).attribute(
        "DeepSeek-R1-Zero reaches a Codeforces rating of 2,029 Elo."
    )
    assert not attribution.supported, attribution.citations
