"""The bundled e5 model: how it is prepared on disk, and how the embeddings class uses it.

The real model is used throughout; it is materialised once into the shared `models_dir` and loaded once per
session. Tests that need to break a build work on their own copy in tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rag import embeddings as emb_module
from rag import materialise as materialise_module
from rag.embeddings import (
    E5_PROMPTS,
    MARKER_NAME,
    ModelPreparationError,
    SentenceTransformerEmbeddings,
    materialise_e5,
)
from rag.settings import DEFAULT_EMBEDDING_MODEL, Settings

REPO = Path(__file__).resolve().parents[2]

QUESTION_EN = "Why did Italy ban DeepSeek?"
ANSWER_FR = "l'interdiction de DeepSeek par l'Italie le 30 janvier pour des raisons de transfert de données"
COOKING_FR = "Faites revenir les oignons dans le beurre, puis ajoutez la crème et laissez mijoter dix minutes."


@pytest.fixture(scope="session")
def e5_dir(models_dir: Path) -> Path:
    return materialise_e5(models_dir / DEFAULT_EMBEDDING_MODEL)


@pytest.fixture(scope="session")
def embeddings(embedder: SentenceTransformerEmbeddings) -> SentenceTransformerEmbeddings:
    """The session's loaded model (conftest's `embedder`): loading costs seconds, so it is shared."""
    return embedder


def _no_build(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the model folder was rebuilt")


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.with_suffix(".lock").name)


# ---------------------------------------------------------------------------------------------------------
# materialisation


def test_materialised_folder_is_complete_and_reused(e5_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = e5_dir / MARKER_NAME
    assert marker.is_file()
    for name in ("model.safetensors", "config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json"):
        assert (e5_dir / name).is_file(), name
    assert (e5_dir / "2_Normalize").is_dir()
    st_config = json.loads((e5_dir / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert json.loads((e5_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 512

    before = {p: p.stat().st_mtime_ns for p in e5_dir.rglob("*")}
    monkeypatch.setattr(emb_module, "_build", _no_build)
    started = time.perf_counter()
    assert materialise_e5(e5_dir) == e5_dir
    assert time.perf_counter() - started < 0.5
    assert {p: p.stat().st_mtime_ns for p in e5_dir.rglob("*")} == before


def test_altered_tokenizer_vocabulary_is_refused_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = json.loads(emb_module._bundled_tokenizer().read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]
    vocab[1000], vocab[1001] = vocab[1001], vocab[1000]  # two ids swapped: every count still matches
    altered = tmp_path / "sources" / "tokenizer.json"
    altered.parent.mkdir()
    altered.write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    target = tmp_path / "models" / "e5"
    monkeypatch.setattr(emb_module, "_write_folder", _no_build)

    with pytest.raises(ModelPreparationError, match="vocabulary mismatch: 2 of 250002 pieces differ"):
        materialise_e5(target, tokenizer_json=altered)

    assert not target.exists()
    assert _siblings(target) == []


def test_a_disk_without_room_is_said_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The e5 folder's size is read from the model file (fp32 weights and the tokenizer): with less free, the
    build stops with that figure before writing, rather than as a serialiser's I/O error half way through."""
    target = tmp_path / "models" / "e5"
    monkeypatch.setattr(materialise_module, "free_bytes", lambda _directory: 100_000_000)
    with pytest.raises(ModelPreparationError, match=r"needs 48\d MB free in .*models and 100 MB are"):
        materialise_e5(target)
    assert not target.exists()
    assert _siblings(target) == []


def test_interrupted_build_leaves_no_completed_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "models" / "e5"

    def crash(folder: Path, _e5: object) -> None:
        (folder / "model.safetensors").write_bytes(b"half a file")
        raise RuntimeError("simulated crash while writing weights")

    with monkeypatch.context() as patch:
        patch.setattr(emb_module, "_write_weights", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            materialise_e5(target)
    assert not target.exists()
    assert _siblings(target) == []

    # A killed process leaves what no exception handler could clean: a staging dir and, say, a half folder
    # from some older writer. Neither is mistaken for a model; the next build replaces them.
    (tmp_path / "models" / ".e5.killed.tmp").mkdir()
    target.mkdir()
    (target / "config.json").write_text("{}")
    messages: list[str] = []
    assert materialise_e5(target, messages.append) == target
    assert (target / MARKER_NAME).is_file()
    assert (target / "model.safetensors").stat().st_size > 400_000_000
    assert _siblings(target) == ["e5"]
    assert any("dequantising" in m for m in messages)


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    target = tmp_path / "models" / "e5"
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from rag.embeddings import materialise_e5\n"
        "messages = []\n"
        "materialise_e5(Path(sys.argv[1]), messages.append)\n"
        "print(json.dumps(messages))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(target)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [json.loads(proc.communicate(timeout=300)[0]) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    builds = [any("dequantising" in m for m in messages) for messages in outputs]
    assert sorted(builds) == [False, True]
    assert (target / MARKER_NAME).is_file()
    assert _siblings(target) == ["e5"]


# ---------------------------------------------------------------------------------------------------------
# the embeddings class


def test_prompts_are_applied(embeddings: SentenceTransformerEmbeddings) -> None:
    model = embeddings.model
    plain_query = model.encode(["query: x"], normalize_embeddings=True)[0]
    plain_passage = model.encode(["passage: x"], normalize_embeddings=True)[0]
    query = np.array(embeddings.embed_query("x"))
    passage = np.array(embeddings.embed_documents(["x"])[0])
    np.testing.assert_allclose(query, plain_query, atol=1e-5)
    np.testing.assert_allclose(passage, plain_passage, atol=1e-5)
    assert float(query @ passage) < 0.999  # the two prompts really differ
    assert model.prompts == E5_PROMPTS


def test_cross_lingual_question_matches_french_answer(embeddings: SentenceTransformerEmbeddings) -> None:
    question = embeddings.encode([QUESTION_EN], "query")[0]
    answer, cooking = embeddings.encode([ANSWER_FR, COOKING_FR], "passage")
    assert float(question @ answer) > float(question @ cooking) + 0.05


def test_shapes_norms_and_dimension(embeddings: SentenceTransformerEmbeddings) -> None:
    assert embeddings.dimension == 384
    assert embeddings.model_name == "multilingual-e5-small"
    vectors = embeddings.encode(["un", "deux", "three"], "passage")
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embeddings.encode([], "query").shape == (0, 384)
    query = embeddings.embed_query("bonjour")
    assert isinstance(query, list)
    assert isinstance(query[0], float)
    assert len(query) == 384


def test_texts_embedded_counts_texts_sent_to_the_model(embeddings: SentenceTransformerEmbeddings) -> None:
    start = embeddings.texts_embedded
    embeddings.embed_documents(["a", "b", "c"])
    assert embeddings.texts_embedded == start + 3
    embeddings.embed_query("d")
    embeddings.encode(["e", "f"], "passage")
    assert embeddings.texts_embedded == start + 6
    assert embeddings.embed_documents([]) == []
    embeddings.encode([], "query")
    assert embeddings.texts_embedded == start + 6


def test_model_loads_once_across_threads(
    embeddings: SentenceTransformerEmbeddings,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = embeddings.model
    calls: list[int] = []

    def slow_load(_self: SentenceTransformerEmbeddings) -> object:
        calls.append(1)
        time.sleep(0.2)
        return loaded

    monkeypatch.setattr(SentenceTransformerEmbeddings, "_load", slow_load)
    fresh = SentenceTransformerEmbeddings(make_settings())
    assert calls == []  # constructing does not load
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(fresh.model)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert all(model is loaded for model in seen)


_OFFLINE_SCRIPT = """
import json, os, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse

from rag.settings import Settings
from rag.embeddings import SentenceTransformerEmbeddings

emb = SentenceTransformerEmbeddings(Settings(_env_file=None, data_dir=sys.argv[1]))
lazy = "sentence_transformers" not in sys.modules and "torch" not in sys.modules
vector = emb.embed_query("Pourquoi l'Italie a-t-elle interdit DeepSeek ?")
print(json.dumps({"lazy": lazy, "dim": len(vector), "offline": os.environ.get("HF_HUB_OFFLINE")}))
"""


@pytest.mark.parametrize("hub_offline", ["1", None], ids=["HF_HUB_OFFLINE=1", "unset"])
def test_loads_offline_in_a_fresh_process(
    e5_dir: Path, make_settings: Callable[..., Settings], tmp_path: Path, hub_offline: str | None
) -> None:
    settings = make_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "RAG_"))}
    env.update(PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "empty-hf-home"))
    if hub_offline is not None:
        env["HF_HUB_OFFLINE"] = hub_offline
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, str(settings.data_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"lazy": True, "dim": 384, "offline": "1"}


def test_a_question_is_embedded_once_for_retrieval_and_answer(embeddings: SentenceTransformerEmbeddings) -> None:
    question = f"Pourquoi l'Italie a-t-elle interdit DeepSeek le {uuid.uuid4().hex} ?"  # not asked before
    before = embeddings.texts_embedded
    first = embeddings.embed_query(question)
    again = embeddings.query_vector(question)
    assert embeddings.texts_embedded == before + 1
    assert np.allclose(first, again)
    embeddings.embed_query(f"Why did Italy ban DeepSeek on {uuid.uuid4().hex}?")
    assert embeddings.texts_embedded == before + 2
