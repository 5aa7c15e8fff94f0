"""Build a Hugging Face ``CLIPTokenizer`` from CLIP's byte-pair-encoding merge list.

The merge list (``assets/bpe_simple_vocab_16e6.txt.gz``, the file CLIP and open_clip
ship) fully determines CLIP's 49,408-token vocabulary: 256 byte symbols, the same
256 with an end-of-word marker, one token per merge, and the two special tokens.
Writing ``vocab.json`` + ``merges.txt`` from it lets the embedded models use the real
CLIP tokenizer, so a user can type anything and get the same token ids as CLIP.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BPE_PATH = ASSETS / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
# CLIP uses the first 49152 - 256 - 2 merges of the file (its first line is a header).
NUM_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """Map each byte to a printable unicode character (the GPT-2/CLIP byte-level trick)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # Insertion order matters: the vocabulary lists the printable bytes first.
    return table


def build_clip_tokenizer_files(out_dir: str | Path, bpe_path: str | Path = BPE_PATH) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and the tokenizer configs into ``out_dir``.

    The result loads with ``CLIPTokenizer.from_pretrained(out_dir)`` and has 49,408 tokens.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"expected {VOCAB_SIZE} tokens from {bpe_path}, got {len(vocab)}")
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 77,
        "do_lower_case": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out
