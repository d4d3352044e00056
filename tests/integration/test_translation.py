"""Cross-language retrieval: the question is also searched in the index's other language.

Unit tests on fakes (translation clean-up, cache, which searches are made, when a translation is asked for), then
the real thing: the bundled local model translates, the real e5 model and a real Chroma retrieve, on a small
corpus where each question's answer is in the other language and its own language holds look-alike distractors.
"""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import Field

from rag.chain import AnswerChain
from rag.retrieval import bilingual_searches
from rag.service import RagService
from rag.translation import MAX_TRANSLATED_CHARS, ChatTranslator, clean_translation


def test_the_translation_is_its_first_line_without_labels_or_quotes():
    assert clean_translation('Translation: "When was DeepSeek launched?"\nNote: literal', "x") == (
        "When was DeepSeek launched?"
    )
    assert clean_translation("« Quand DeepSeek a-t-il été lancé ? »", "x") == "Quand DeepSeek a-t-il été lancé ?"


def test_an_empty_or_unchanged_translation_is_none():
    assert clean_translation("  \n ", "Qui ?") is None
    assert clean_translation("What is  GRPO?", "what is GRPO?") is None


class CountingChatModel(GenericFakeChatModel):
    """Answers from a list and counts its calls."""

    calls: int = 0

    def _generate(self, *args, **kwargs):
        self.calls += 1
        return super()._generate(*args, **kwargs)


def test_translations_are_cached_by_question_and_language():
    model = CountingChatModel(messages=iter([AIMessage("When was it launched?"), AIMessage("Quand ?")]))
    translator = ChatTranslator(model, cache_size=2)
    assert translator.translate("Quand a-t-il été lancé ?", "en") == "When was it launched?"
    assert translator.translate("Quand a-t-il été lancé ?", "en") == "When was it launched?"
    assert model.calls == 1
    assert translator.translate("When?", "fr") == "Quand ?"
    assert model.calls == 2


def test_each_part_of_a_question_gets_its_translation_when_the_parts_match():
    question = "L'article dit que l'Italie a interdit DeepSeek. Selon le RGPD, quand un transfert est-il permis ?"
    translation = "The article says Italy banned DeepSeek. Under the GDPR, when is a transfer allowed?"
    searches = bilingual_searches(question, "fr", {"en": translation})
    assert searches == [
        {"fr": question, "en": translation},
        {"fr": "L'article dit que l'Italie a interdit DeepSeek.", "en": "The article says Italy banned DeepSeek."},
        {
            "fr": "Selon le RGPD, quand un transfert est-il permis ?",
            "en": "Under the GDPR, when is a transfer allowed?",
        },
    ]


def test_a_translation_with_other_parts_only_pairs_the_whole_question():
    question = "L'article dit que l'Italie a interdit DeepSeek. Selon le RGPD, quand un transfert est-il permis ?"
    searches = bilingual_searches(question, "fr", {"en": "Italy banned DeepSeek; when may data leave the EU?"})
    assert searches[0] == {"fr": question, "en": "Italy banned DeepSeek; when may data leave the EU?"}
    assert all(list(search) == ["fr"] for search in searches[1:])


class StubRetriever:
    """Only what the chain asks before translating: which languages the index holds."""

    def __init__(self, languages: set[str]):
        self.languages = languages

    def holds_language(self, language, sources=None):
        return language in self.languages


def translations_for(question: str, languages: set[str], translator) -> dict:
    """What the chain would search `question` with, over an index holding `languages`."""
    chain = AnswerChain(
        StubRetriever(languages),
        encoder=None,
        min_similarity=0.8,
        drop_unsupported=False,
        translator=lambda: translator,
    )
    return chain._translations(question, "fr", None)


def test_no_translation_is_asked_for_when_the_index_holds_only_the_question_language():
    class FailingTranslator:
        def translate(self, text, target):
            raise AssertionError("nothing to translate for")

    assert translations_for("Quand DeepSeek a-t-il été lancé ?", {"fr"}, FailingTranslator()) == {}


# --- the real thing ---------------------------------------------------------------------------------------

DOCUMENTS = {
    # The answers: each in the language the question is not in.
    "bakery_en.md": "# Riverside bakery\n\nThe Riverside bakery in Leeds bakes 4,000 sourdough loaves every Saturday, "
    "with flour milled in Yorkshire.\n",
    "port_fr.md": "# Port de Marseille\n\nLe port de Marseille a reçu douze grues électriques en 2023 pour décharger "
    "les porte-conteneurs plus vite.\n",
    # Distractors in each question's own language, sharing its words.
    "boulangerie_fr.md": "# La boulangerie\n\nChaque samedi, la boulangerie du quartier cuit du pain au levain; "
    "combien de pains vend-elle ? Cela dépend de la saison.\n",
    "harbour_en.md": "# Harbour cranes\n\nHow many cranes does a harbour need? The port of Rotterdam uses electric "
    "cranes to unload container ships, and services them every year.\n",
}


@pytest.fixture(scope="module")
def bilingual_service(tmp_path_factory, embedder, models_dir):
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("bilingual")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCUMENTS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings(
        _env_file=None, data_dir=root / "data", corpus_dir=corpus, generator="extractive", query_translation="local"
    )
    settings.data_dir.mkdir()
    settings.models_dir.symlink_to(models_dir, target_is_directory=True)
    service = RagService(settings, embedder=embedder)
    assert service.refresh().added == len(DOCUMENTS)
    assert service.translator() is not None, service.translator_unavailable
    return service


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Combien de pains au levain la boulangerie Riverside de Leeds cuit-elle chaque samedi ?", "bakery_en.md"),
        ("How many electric cranes did the port of Marseille receive in 2023?", "port_fr.md"),
    ],
)
def test_a_question_finds_its_answer_in_the_other_language_first(bilingual_service, question, expected):
    answer = bilingual_service.ask(question, k=2)
    assert answer.passages[0].source == expected, [p.source for p in answer.passages]
    assert answer.timings_ms.translate > 0


def test_a_failing_translation_leaves_the_question_as_asked():
    class BrokenTranslator:
        def translate(self, text, target):
            raise ValueError("Requested tokens exceed context window")

    assert translations_for("Quand DeepSeek a-t-il été lancé ?", {"fr", "en"}, BrokenTranslator()) == {}


class RecordingChatModel(GenericFakeChatModel):
    """Keeps the last message of each prompt it gets."""

    prompts: list[str] = Field(default_factory=list)

    def _generate(self, messages, *args, **kwargs):
        self.prompts.append(messages[-1].content)
        return super()._generate(messages, *args, **kwargs)


def test_the_translated_text_is_bounded():
    model = RecordingChatModel(messages=iter([AIMessage("Export controls")]))
    ChatTranslator(model).translate("contrôles " * 1000, "en")
    assert len(model.prompts[0]) <= MAX_TRANSLATED_CHARS + 40
    assert model.prompts[0].endswith("contrôles")  # cut between words
