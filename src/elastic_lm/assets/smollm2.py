"""SmolLM2-135M as a plain Hugging Face folder, converted once from the packaged GGUF.

Why: the only offline SmolLM2 is a Q4_1 GGUF; de-quantising it takes about 15 s and a GGUF-loaded
model refuses ``save_pretrained``. We convert once to fp32 safetensors under ``cache_dir()`` and
reload from there in a fraction of a second. The conversion writes to a temporary folder and renames
it into place, so a crash or a second process never leaves a half-written cache behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from elastic_lm.assets.registry import cache_dir, get_asset

SMOLLM2_DIRNAME = "smollm2-135m"
MARKER = ".elastic-lm-complete"


def smollm2_cache_path() -> Path:
    """Where the converted SmolLM2 lives (whether or not it exists yet)."""
    return cache_dir() / SMOLLM2_DIRNAME


def is_converted() -> bool:
    """True when a complete converted copy is cached."""
    return (smollm2_cache_path() / MARKER).is_file()


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """De-quantise ``gguf_file`` into a plain LlamaForCausalLM folder (weights + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    pkg_dir, name = str(gguf_file.parent), gguf_file.name
    loaded = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(pkg_dir, gguf_file=name).save_pretrained(out_dir)


def smollm2_path() -> Path:
    """Folder of SmolLM2-135M loadable with ``from_pretrained``; converts on first use only."""
    final = smollm2_cache_path()
    if is_converted():
        return final
    gguf_file = get_asset("smollm2-135m").require()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}-", dir=final.parent))
    try:
        convert_gguf(gguf_file, tmp)
        (tmp / MARKER).write_text("converted from " + gguf_file.name + "\n")
        if is_converted():  # another process finished first: keep its copy
            return final
        if final.exists():  # an incomplete leftover (no marker): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
    except OSError:
        if not is_converted():  # not a lost race with another process
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
