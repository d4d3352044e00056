"""The local model's raw speed: prompt evaluation and generation in tokens/s, as the answer path loads it.

    .venv/bin/python bench/llm_speed.py [--tokens 400] [--runs 3] [--json]

Prompt evaluation is most of the wait before an answer's first sentence (docs/benchmarks.md), so this is what
a build or load option is judged by. The prompt is the French article's first tokens, evaluated after an
80-token prefix kept in the cache, as the fixed system prompt is; generation is timed over 40 tokens. It prints
what llama.cpp was built with (AVX-512 or not) beside the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.llm_local import load_local_chat_model  # noqa: E402
from rag.settings import Settings  # noqa: E402

PREFIX = 80
GENERATED = 40


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=400, help="prompt tokens evaluated after the cached prefix")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import llama_cpp

    model = load_local_chat_model(Settings())
    llama = model.llama
    text = (REPO / "corpus" / "deepseek_article_fr.txt").read_text(encoding="utf-8")
    tokens = llama.tokenize(text.encode("utf-8"))[: PREFIX + args.tokens]
    llama.reset()
    llama.eval(tokens[:PREFIX])
    prompt_rates = []
    for _ in range(args.runs):
        llama.n_tokens = PREFIX  # drop what the last run evaluated, keep the prefix
        start = time.perf_counter()
        llama.eval(tokens[PREFIX:])
        prompt_rates.append((len(tokens) - PREFIX) / (time.perf_counter() - start))
    start = time.perf_counter()
    for count, _ in enumerate(llama.generate([], reset=False), start=1):
        if count == GENERATED:
            break
    generation_rate = GENERATED / (time.perf_counter() - start)

    result = {
        "prompt_tokens": len(tokens) - PREFIX,
        "prompt_eval_tokens_per_s": [round(rate, 1) for rate in prompt_rates],
        "prompt_eval_tokens_per_s_median": round(statistics.median(prompt_rates), 1),
        "generation_tokens_per_s": round(generation_rate, 1),
        "flash_attn": model.flash_attn,
        "build": llama_cpp.llama_print_system_info().decode().strip(),
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{key}: {value}" for key, value in result.items()))


if __name__ == "__main__":
    main()
