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
import shutil
from pathlib import Path
from typing import Any

from demo.presets import ASSETS

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


def _read_merges(folder: Path) -> list[tuple[str, str]]:
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    return [(a, b) for a, b in (line.split() for line in lines[1:] if line.strip())]


def shrink_vocabulary(src: str | Path, dst: str | Path, texts: list[str]) -> dict[str, int]:
    """Copy the CLIP checkpoint ``src`` to ``dst`` with only the tokens ``texts`` need.

    Kept: the 512 byte symbols (so every string still tokenises), the two special tokens,
    and every merge product used to tokenise ``texts`` together with the pieces it was
    merged from. Byte-pair encoding applies the lowest-ranked applicable merge first, and
    every merge the full tokenizer applies to ``texts`` is kept in the same order, so those
    texts get the same tokens (renumbered) and the model the same embedding rows: its
    outputs on them are unchanged. Other words split into smaller pieces, whose rows the
    embedded models never trained anyway. The token table is most of a small CLIP's size
    (49,408 x width), which is why the embedded zero-shot stand-in ships this way.
    """
    from transformers import CLIPTokenizer  # here: seconds to import

    src, dst = Path(src), Path(dst)
    full = CLIPTokenizer.from_pretrained(str(src))
    vocab: dict[str, int] = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
    merges = _read_merges(src)
    full_ids = [full(text)["input_ids"] for text in texts]  # tokenised once: kept tokens, then the check
    keep = _needed_tokens(full, vocab, merges, [full.convert_ids_to_tokens(i) for ids in full_ids for i in ids])
    old_ids = sorted(vocab[t] for t in keep)
    new_vocab = {full.convert_ids_to_tokens(i): n for n, i in enumerate(old_ids)}
    kept_merges = [m for m in merges if m[0] + m[1] in keep]

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("vocab.json", "merges.txt", "model.safetensors",
                                                            "config.json", "tokenizer.json"))
    (dst / "vocab.json").write_text(json.dumps(new_vocab, ensure_ascii=False), encoding="utf-8")
    (dst / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in kept_merges) + "\n",
                                    encoding="utf-8")
    _shrink_weights(src, dst, old_ids, {name: new_vocab[token] for name, token in (
        ("bos_token_id", full.bos_token), ("eos_token_id", full.eos_token), ("pad_token_id", full.pad_token))})

    small = CLIPTokenizer.from_pretrained(str(dst))
    remap = {old: new for new, old in enumerate(old_ids)}
    for text_, ids in zip(texts, full_ids, strict=True):
        want = [remap[i] for i in ids]
        got = small(text_)["input_ids"]
        if got != want:
            raise RuntimeError(f"the shrunk tokenizer splits {text_!r} differently: {got} vs {want}")
    return {"tokens": len(old_ids), "merges": len(kept_merges), "texts": len(texts)}


def _needed_tokens(full: Any, vocab: dict[str, int], merges: list[tuple[str, str]], used: list[str]) -> set[str]:
    """The byte symbols, the special tokens, the ``used`` tokens and every piece they were merged from."""
    made_from = {a + b: (a, b) for a, b in merges}
    keep = {token for token, i in vocab.items() if i < 512}
    keep |= {full.bos_token, full.eos_token, full.unk_token, full.pad_token}
    stack = list(used)
    while stack:
        token = stack.pop()
        if token not in keep:
            keep.add(token)
            stack.extend(made_from.get(token, ()))
    return keep


def _shrink_weights(src: Path, dst: Path, old_ids: list[int], special_ids: dict[str, int]) -> None:
    """Copy ``src``'s weights and config to ``dst`` keeping only the token rows ``old_ids``
    (renumbered in that order); ``special_ids`` are the text config's new special-token ids."""
    import torch  # here, with safetensors.torch: building tokenizer files needs neither
    from safetensors.torch import load_file, save_file

    weights = load_file(str(src / "model.safetensors"))
    key = "text_model.embeddings.token_embedding.weight"
    weights[key] = weights[key][torch.tensor(old_ids)].contiguous()
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "model.safetensors").chmod(0o644)  # safetensors writes owner-only files
    config = json.loads((src / "config.json").read_text())
    text = config["text_config"]
    text["vocab_size"] = len(old_ids)
    text.update(special_ids)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
