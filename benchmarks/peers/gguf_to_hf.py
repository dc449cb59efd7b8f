"""Dequantize a GGUF model into a Hugging Face directory with transformers (run with optillm's
venv python, which has transformers; needs the `gguf` package). optillm's DeepConf runs only on
its local transformers engine, which loads a model directory, and no model hub is reachable here:
this gives it the same weights the llama.cpp server serves (Q4_K_M values, computed in fp32).

    venv-optillm/bin/python gguf_to_hf.py MODEL.gguf OUT_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer


def gguf_eos(path: Path) -> int:
    """The end-of-turn token id the GGUF declares (151645, <|im_end|>, for Qwen2.5 instruct)."""
    field = GGUFReader(path).fields["tokenizer.ggml.eos_token_id"]
    return int(field.parts[field.data[0]][0])


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    # transformers 5.12 makes <|endoftext|> the eos of a Qwen GGUF; the GGUF (and the official
    # HF repository's tokenizer_config) say <|im_end|>. Without this, a generator that stops
    # only on tokenizer.eos_token_id (optillm's DeepConf) writes past the end of its turn.
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(gguf_eos(src))
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    took = time.perf_counter() - started
    print(f"{src.name} → {out} ({model.dtype}, eos {tokenizer.eos_token}) in {took:.0f} s")


if __name__ == "__main__":
    main()
