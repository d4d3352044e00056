"""Which CPU the compiled llama.cpp was built for.

setup.sh compiles llama.cpp for the machine's own CPU (-march=native: AVX-512 where there is some), and such a
library run on a CPU without those instructions dies with an illegal instruction, taking the server with it (a
`.venv` copied to another machine, an image built on another host). setup.sh records the key of the CPU it built
for in the environment; the local model is not loaded on a CPU whose key differs (the extractive generator answers,
and the message says to run setup.sh, which then rebuilds).

Also a script (`python rag/cpu.py` prints the key): setup.sh needs the key before the project is installed, so
this module imports the standard library only.
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from pathlib import Path

# Where setup.sh writes the key, in the environment's prefix (.venv/).
BUILD_RECORD = "llama-cpp-cpu"

# Instruction-set extensions a compiler targets, as /proc/cpuinfo names them (x86 "flags", Arm "Features"; "pni"
# is SSE3). Other flags (mitigations, virtualisation) change with microcode or hypervisor and are left out, so
# they do not count as another CPU.
_ISA_FLAG = re.compile(
    r"(?:avx|sse|ssse|pni|fma|f16c|bmi|amx|popcnt|abm|lzcnt|movbe|aes|sha|gfni|vaes|vpclmul|pclmul|adx|xsave|"
    r"asimd|sve|fp|neon|i8mm|bf16|dotprod)\w*"
)


def cpu_key(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """A short hash of the machine type and the CPU's instruction-set extensions."""
    extensions: list[str] = []
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("flags", "Features"):
                extensions = sorted(flag for flag in value.split() if _ISA_FLAG.fullmatch(flag))
                break
    return hashlib.sha256(" ".join([platform.machine(), *extensions]).encode()).hexdigest()[:16]


def built_for_another_cpu(prefix: Path | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The key llama.cpp was built for when it is not this CPU's; None when it is, or when nothing was recorded
    (llama-cpp-python installed some other way)."""
    record = (prefix or Path(sys.prefix)) / BUILD_RECORD
    if not record.is_file():
        return None
    built = record.read_text(encoding="utf-8").strip()
    return built if built != cpu_key(cpuinfo) else None


if __name__ == "__main__":
    print(cpu_key())
