"""Helpers every benchmark section shares: timing, memory, machine facts, model factories.

The model factories build randomly initialised CLIP4Clip encoders of a given size: weights
do not change how long a forward pass takes, so a random ViT-B/32-sized tower times what
the real one would, offline.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import DemoError
from demo.models.clip4clip import Clip4Clip
from demo.models.encoders import Clip4ClipEncoder
from demo.models.temporal import Clip4ClipSettings
from demo.models.tokenizer import build_clip_tokenizer_files
from demo.presets import EMBEDDED, shown_path

log = logging.getLogger(__name__)

# CLIP ViT-B/32's towers (the size of the WebVid CLIP4Clip checkpoints).
VITB32_TEXT: dict[str, Any] = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                                   num_hidden_layers=12, num_attention_heads=8,
                                   max_position_embeddings=77, projection_dim=512)
VITB32_VISION: dict[str, Any] = dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                                     num_hidden_layers=12, num_attention_heads=12, projection_dim=512)
# The test suite's tiny towers (tests/conftest.py), with a configurable projection width.
TINY_TEXT: dict[str, Any] = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, max_position_embeddings=32, projection_dim=16)
TINY_VISION: dict[str, Any] = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=2, projection_dim=16)


def recorded_path(path: str | Path) -> str:
    """How a bench names a file or folder in what it writes: relative to the project (or the working
    directory) as :func:`demo.presets.shown_path` does; a path outside both keeps its last two parts
    behind ``.../``, so BENCHMARKS.md names no one's machine.

    >>> recorded_path("/somewhere/else/precomputed/index-world")
    '.../precomputed/index-world'
    >>> recorded_path("Searchium-ai/clip4clip-webvid150k")
    'Searchium-ai/clip4clip-webvid150k'
    """
    shown = shown_path(path)
    if not Path(shown).is_absolute():
        return shown
    return ".../" + "/".join(Path(shown).parts[-2:])


@dataclass(frozen=True)
class Timing:
    """Latency percentiles of ``reps`` timed calls, in milliseconds."""

    p50_ms: float
    p95_ms: float
    reps: int

    def to_dict(self) -> dict[str, float]:
        return {"p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "reps": self.reps}


def time_calls(fn: Callable[[int], object], reps: int, warmup: int = 1, budget_s: float | None = None,
               min_reps: int = 5) -> Timing:
    """Time ``fn(i)`` for i = 0, 1, ... (so each call can take another query).

    ``warmup`` untimed calls come first. With ``budget_s``, a slow call stops the run once
    ``min_reps`` calls are done and the budget is spent; ``reps`` in the result says how
    many were timed.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    for i in range(warmup):
        fn(i)
    times: list[float] = []
    start = time.perf_counter()
    for i in range(reps):
        t0 = time.perf_counter()
        fn(warmup + i)
        times.append(time.perf_counter() - t0)
        if budget_s is not None and len(times) >= min_reps and time.perf_counter() - start > budget_s:
            break
    ms = 1e3 * np.asarray(times)
    return Timing(float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), len(times))


def rss_mb() -> float:
    """Resident set size of this process in MiB (anonymous and mapped-file pages)."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def file_backed_mb() -> float:
    """The part of the RSS that maps files (e.g. memory-mapped .npy pages), in MiB; these
    pages belong to the page cache and the kernel can drop them under memory pressure."""
    import psutil

    return float(getattr(psutil.Process().memory_info(), "shared", 0)) / 2**20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes spent busy, CPU seconds this process and its waited-for
    children spent) since boot / start. Their difference over a run is what the rest of the
    machine used meanwhile, which the load average cannot tell apart from the run itself."""
    import resource

    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    busy = sum(ticks[:3]) + sum(ticks[5:8])  # user nice system, irq softirq steal (not idle, iowait)
    own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))  # fmt: skip
    return busy / os.sysconf("SC_CLK_TCK"), own


def machine_info() -> dict[str, Any]:
    """CPU, cores, load and library versions, for the table's header."""
    import faiss
    import torch
    import transformers

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "nice": os.nice(0),  # this process's scheduling niceness (19: it yields to everything else)
        "load_average": load_average(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "transformers": transformers.__version__,
    }


def tokenizer_dir(workdir: Path) -> Path:
    """CLIP's real tokenizer files (built from the shipped BPE list), written once per workdir."""
    folder = workdir / "tokenizer"
    if not (folder / "vocab.json").is_file():
        build_clip_tokenizer_files(folder)
    return folder


def random_encoder(text: dict[str, Any], vision: dict[str, Any], workdir: Path, pooling: str = "meanP",
                   seed: int = 0, name: str = "random", **settings: Any) -> Clip4ClipEncoder:
    """A randomly initialised CLIP4Clip encoder with the given tower configs (CPU, eval mode)."""
    import torch
    from transformers import CLIPTokenizer


    torch.manual_seed(seed)
    model = Clip4Clip.from_config(text, vision, Clip4ClipSettings(pooling=pooling, **settings))
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir(workdir)))
    return Clip4ClipEncoder(model.eval(), tokenizer, name, "cpu")


def embedded_encoder(workdir: Path) -> tuple[Clip4ClipEncoder, str]:
    """The embedded preset's shipped model. Returns (encoder, note); ``workdir`` is unused (kept
    so every model source is called alike)."""
    if not Path(EMBEDDED.model).is_dir():
        raise DemoError(f"{EMBEDDED.model} is missing: the indexing bench times the shipped embedded model "
                        "(restore precomputed/ from git, or `python -m demo train --preset embedded`)")
    return Clip4ClipEncoder.from_pretrained(EMBEDDED.model, device="cpu"), ""


def weights_mb(module: Any) -> float:
    """Bytes of a module's state dict (parameters, buffers, packed int8 weights) in MiB."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell() / 2**20
