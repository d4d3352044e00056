"""The retrieval ablation bench as a reader runs it (`bench/retrieval.py`), on a small real index: it went through
the answer chain's own retrieval step and broke silently once when that step was rewritten, so it is run here.
The article alone is indexed and question translation is off (it would load the local model for each English
question), so every variant runs and the article's questions find their evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import MODELS_DIR, REPO

ARTICLE = REPO / "corpus" / "deepseek_article_fr.txt"
BENCH = REPO / "bench" / "retrieval.py"


def test_the_bench_measures_every_variant_through_the_chain(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(MODELS_DIR, target_is_directory=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data), "RAG_QUERY_TRANSLATION": "off"}
    rag = Path(sys.executable).with_name("rag")
    subprocess.run([str(rag), "index", str(ARTICLE)], env=env, check=True, capture_output=True, timeout=600)

    done = subprocess.run(
        [sys.executable, str(BENCH), "--sets", "dev", "--limit", "4", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    results = report["results"]
    assert len(results) == 9 and list(results)[-1].endswith("default)")
    for variant in results.values():
        dev = variant["dev"]["all"]
        assert dev["n"] == 4
        assert 0.0 <= dev["mrr"] <= dev["recall"] <= 1.0
    # The first dev questions are about the article, the one document indexed: the default finds their evidence.
    assert results[list(results)[-1]]["dev"]["all"]["recall"] >= 0.75
    assert report["latency"]["retrieve ms (+ places for the other language)"]["n"] == 4
