"""Models are put in place once: reused when complete, built under a lock others wait on and then re-check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from filelock import Timeout

from rag.materialise import materialise


def test_a_complete_model_is_reused_and_a_missing_one_built_once(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.bin"
    builds: list[int] = []

    def build() -> None:
        builds.append(1)
        target.write_bytes(b"weights")

    for _ in range(2):
        got = materialise(target, complete=target.exists, build=build, lock_path=tmp_path / "model.lock")
        assert got == target and target.read_bytes() == b"weights"
    assert builds == [1]


def _hold_lock(lock_path: Path, seconds: float, then_write: Path | None = None) -> subprocess.Popen:
    """Another process holding the lock for `seconds`, then (optionally) finishing the model and leaving."""
    code = (
        "import sys, time; from pathlib import Path; from filelock import FileLock\n"
        "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
        "if len(sys.argv) > 3: Path(sys.argv[3]).write_bytes(b'weights')\n"
        "lock.release()\n"
    )
    args = [sys.executable, "-c", code, str(lock_path), str(seconds), *([str(then_write)] if then_write else [])]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_waiter_re_checks_after_the_builder_and_builds_nothing(tmp_path: Path) -> None:
    target, lock_path = tmp_path / "model.bin", tmp_path / "model.lock"
    child = _hold_lock(lock_path, 0.5, then_write=target)
    waited: list[bool] = []
    built: list[bool] = []
    materialise(
        target,
        complete=target.exists,
        build=lambda: built.append(True),
        lock_path=lock_path,
        on_wait=lambda: waited.append(True),
    )
    child.wait(10)
    assert waited == [True] and built == [] and target.read_bytes() == b"weights"


def test_a_bounded_wait_runs_out(tmp_path: Path) -> None:
    lock_path = tmp_path / "model.lock"
    child = _hold_lock(lock_path, 5)
    try:
        with pytest.raises(Timeout):
            materialise(
                tmp_path / "m", complete=lambda: False, build=lambda: None, lock_path=lock_path, wait_seconds=0.2
            )
    finally:
        child.kill()
        child.wait(10)
