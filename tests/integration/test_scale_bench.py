"""The scale bench's smallest point, as CI runs it: both stores (embedded and a `chroma run` server) at 10k vectors,
with a small real-model sample and few questions (2.5–3 minutes measured on the 2 cores with a load average of
3–5); then its table and plot made from the saved output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from harness import CHROMA_CLI, REPO

SCALE = REPO / "bench" / "scale.py"


def run_scale(*options: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCALE), *options],
        env=os.environ | {"HF_HUB_OFFLINE": "1"},  # the bench gives its processes their own settings
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_ten_thousand_vectors_in_both_stores(tmp_path: Path):
    assert CHROMA_CLI.exists()
    output = run_scale("--max-vectors", "10000", "--sample-chunks", "16", "--questions", "5", "--json")
    summary = json.loads(output)
    for key in ("retrieve_p50_ms", "retrieve_p95_ms", "refresh_one_s", "rss_mb"):
        assert summary[key] > 0, key
    points = summary["points"]
    assert [(p["store"], p["vectors"]) for p in points] == [("embedded", 10_000), ("server", 10_000)]
    for point in points:
        assert 10_000 <= point["vectors_stored"] < 10_100
        assert point["chunks"] + point["sentence_vectors"] == point["vectors_stored"]
        # The synthetic chunks carry as many sentence vectors as the real corpus's, within 10%.
        assert abs(point["sentences_per_chunk"] / point["real_sentences_per_chunk"] - 1) < 0.1
        assert point["dense_p50_ms"] <= point["dense_p95_ms"]
        assert point["retrieve_p50_ms"] <= point["retrieve_p95_ms"] < 60_000
        assert 0 < point["refresh_one_embed_s"] < point["refresh_one_s"]
        assert point["chunks_at_end"] >= point["chunks"] + 1000
        assert point["rss_mb"] > point["rss_model_mb"] > 100
        assert point["disk_kb_per_chunk"] > 1
        assert point["replica_startup_s"] > point["startup_model_s"]
    assert points[1]["chroma_server_rss_mb"] > points[1]["chroma_server_rss_empty_mb"]

    saved = tmp_path / "scale.json"
    saved.write_text(output)
    table = run_scale("--report", str(saved), "--plot", str(tmp_path / "scale.svg"))
    assert table.startswith("| | embedded 10k | server 10k |")
    assert "| whole `retrieve`: p50 / p95 ms |" in table
    assert ElementTree.parse(tmp_path / "scale.svg").getroot().tag.endswith("svg")
