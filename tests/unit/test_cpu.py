"""The CPU key setup.sh records for its llama.cpp build, and the local model refused on another CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rag.cpu import BUILD_RECORD, built_for_another_cpu, cpu_key
from rag.llm_local import ModelUnavailable, load_local_chat_model
from rag.settings import Settings

AVX512 = "fpu vme sse sse2 ssse3 pni fma avx avx2 avx512f avx512_vnni md_clear hypervisor"


def cpuinfo(tmp_path: Path, flags: str, name: str = "cpuinfo") -> Path:
    path = tmp_path / name
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n")
    return path


def test_the_key_changes_with_the_instruction_set_and_not_with_other_flags(tmp_path: Path) -> None:
    key = cpu_key(cpuinfo(tmp_path, AVX512))
    without_avx512 = cpu_key(cpuinfo(tmp_path, AVX512.replace(" avx512f avx512_vnni", ""), "b"))
    other_mitigations = cpu_key(cpuinfo(tmp_path, AVX512.replace("md_clear hypervisor", "flush_l1d"), "c"))
    assert key != without_avx512
    assert key == other_mitigations
    assert key == cpu_key(cpuinfo(tmp_path, " ".join(reversed(AVX512.split())), "d"))


def test_a_build_is_for_another_cpu_only_when_its_recorded_key_differs(tmp_path: Path) -> None:
    info = cpuinfo(tmp_path, AVX512)
    assert built_for_another_cpu(tmp_path, info) is None  # nothing recorded: installed some other way
    (tmp_path / BUILD_RECORD).write_text(cpu_key(info) + "\n")
    assert built_for_another_cpu(tmp_path, info) is None
    (tmp_path / BUILD_RECORD).write_text("0123456789abcdef\n")
    assert built_for_another_cpu(tmp_path, info) == "0123456789abcdef"


def test_the_local_model_is_not_loaded_from_a_build_for_another_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before llama.cpp is imported, with the way out in the message (the caller falls back)."""
    (tmp_path / BUILD_RECORD).write_text("0123456789abcdef\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    with pytest.raises(ModelUnavailable, match=r"another CPU \(0123456789abcdef.*run \./setup\.sh"):
        load_local_chat_model(Settings(data_dir=tmp_path / "data"))
    assert "llama_cpp" not in sys.modules
