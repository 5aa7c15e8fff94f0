"""``python -m demo bench import``: importing a WebVid-sized index (1.5M rows) on this machine.

Synthetic files in the layout of the Searchium Space's ``data/`` folder are written first (not
timed): float32 (N, 512) vectors, packed sign codes (N, 64), and a CSV of ``videoid, contentUrl,
name, page_dir`` with WebVid-like URLs and captions. Then ``python -m demo index import`` runs in
a child process, as a person would run it, and its wall time and peak resident memory (the
kernel's ``ru_maxrss`` of that process) are recorded; then a second child opens the index
(``VideoIndex.load``) and runs searches, so what the app pays for an index of this size is on the
page too. The files come from the page cache when the machine has room for them (it does here:
24 GB), which the table says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from demo.index.stream import NpyWriter
from demo.presets import ROOT, WEBVID

WORDS = ("aerial", "view", "of", "a", "city", "at", "sunset", "woman", "walking", "on", "the", "beach", "slow",
         "motion", "close", "up", "dog", "running", "in", "park", "timelapse", "clouds", "over", "mountains",
         "traffic", "night", "young", "man", "typing", "laptop", "office", "water", "drops", "leaf", "forest")


def write_searchium_layout(folder: Path, rows: int, dim: int = 512, block: int = 100_000,
                           seed: int = 0, clusters: int = 0) -> dict[str, Path]:
    """Vectors, packed codes and a metadata CSV of ``rows`` synthetic WebVid videos under ``folder``.

    ``clusters`` 0: independent random directions; else CLIP-like rows: a mean direction every row
    shares, plus one of ``clusters`` random centres, plus noise (cosine ~0.8 to the mean of its
    cluster), so that rows have near neighbours as real embeddings do."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    centres = rng.standard_normal((max(clusters, 1), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"embeddings": folder / "dataset_visual_features.npy",
             "binary": folder / "dataset_visual_features_binary_packed.npy", "metadata": folder / "dataset.csv"}
    vectors = NpyWriter(paths["embeddings"], (rows, dim), np.float32)
    codes = NpyWriter(paths["binary"], (rows, dim // 8), np.uint8)
    words = np.array(WORDS)
    with open(paths["metadata"], "w", encoding="utf-8") as csv:
        csv.write("videoid,contentUrl,name,page_dir\n")
        for s in range(0, rows, block):
            n = min(block, rows - s)
            x = rng.standard_normal((n, dim), dtype=np.float32)
            if clusters:
                x = mean + centres[rng.integers(0, clusters, n)] + 0.6 * x / np.sqrt(dim)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            vectors.write(x)
            codes.write(np.packbits(x > 0, axis=1))
            picks = words[rng.integers(0, len(words), (n, 9))]
            lines = []
            for i, caption in enumerate(" ".join(r) for r in picks):
                vid = 1_000_000 + s + i
                lines.append(f"{vid},https://ak.picdn.net/shutterstock/videos/{vid}/preview/stock-footage-"
                             f"{caption.replace(' ', '-')}.mp4,{caption.capitalize()},{(s + i) // 1000:03d}_{vid}\n")
            csv.write("".join(lines))
    vectors.close()
    codes.close()
    return paths


def run_measured(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``args`` in a child process: wall seconds, peak RSS (MiB, the kernel's count for that
    child alone), exit code and the last lines of its output."""
    started = time.perf_counter()
    child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    output = child.stdout.read() if child.stdout else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "exit_code": child.returncode, "tail": output.strip().splitlines()[-3:]}


_LOAD = """
import json, time, resource, numpy as np
t0 = time.perf_counter()
from demo.index.video_index import VideoIndex
index = VideoIndex.load({out!r})
t1 = time.perf_counter()
q = np.random.default_rng(1).standard_normal((20, index.fingerprint.dim)).astype(np.float32)
index.search(q[0], k=10)
t2 = time.perf_counter()
times = []
for v in q[1:]:
    s = time.perf_counter(); index.search(v, k=10); times.append(time.perf_counter() - s)
print(json.dumps({{"load_s": t1 - t0, "first_search_s": t2 - t1, "search_p50_ms": 1e3 * float(np.median(times)),
                  "rows": len(index), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def bench_import(workdir: Path, rows: int = 1_500_000) -> dict[str, Any]:
    """Write the synthetic files, import them in a child process, then load and search the index."""
    started = time.perf_counter()
    files = write_searchium_layout(workdir / "searchium", rows)
    written = time.perf_counter() - started
    sizes = {k: round(p.stat().st_size / 2**20, 1) for k, p in files.items()}
    out = workdir / "index-webvid"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the model is named, not loaded: no captions are embedded
    imported = run_measured([sys.executable, "-m", "demo", "index", "import", "--embeddings",
                             str(files["embeddings"]), "--binary", str(files["binary"]), "--metadata",
                             str(files["metadata"]), "--out", str(out), "--model", WEBVID.model, "--sampling",
                             "every-second", "--captions", "none", "--overwrite"], env)
    output = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 2**20 if out.is_dir() else 0.0
    loaded = run_measured([sys.executable, "-c", _LOAD.format(out=str(out))], env)
    try:
        loaded.update(json.loads(loaded["tail"][-1]))
    except (IndexError, ValueError):
        pass
    return {"rows": rows, "out": str(out), "files_mib": sizes, "write_files_s": round(written, 1), "import": imported,
            "index_mib": round(output, 1), "load": loaded,
            "command": f"python -m demo index import --embeddings ... --binary ... --metadata ... --out ... "
                       f"--model {WEBVID.model} --sampling every-second --captions none"}


def format_import_markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    r, imp, load = result, result["import"], result["load"]
    f = r["files_mib"]
    goal_mem, goal_s = 2048, 300
    lines = [
        f"`python -m demo bench import` on {meta['date']}: CPU {meta.get('cpu', '?')}, {meta.get('cores', '?')} "
        f"cores, {meta.get('memory_gib', '?')} GiB. {r['rows']:,} synthetic rows in the Searchium Space's layout: "
        f"float32 vectors {f['embeddings']:,} MiB, packed codes {f['binary']:,} MiB, CSV {f['metadata']:,} MiB "
        f"(written in {r['write_files_s']:.0f} s first, so the import reads them from the page cache).",
        "",
        "| measure | goal | measured | holds |",
        "|---|---|---|---|",
        f"| import wall time (`{r['command']}`) | <= {goal_s} s | {imp['seconds']:.0f} s | "
        f"{'yes' if imp['seconds'] <= goal_s and imp['exit_code'] == 0 else '**no**'} |",
        f"| import peak resident memory (the child's ru_maxrss) | <= {goal_mem:,} MiB | {imp['peak_rss_mib']:,.0f} MiB "
        f"| {'yes' if imp['peak_rss_mib'] <= goal_mem else '**no**'} |",
        f"| index folder written | | {r['index_mib']:,.0f} MiB (float16 vectors, codes, metadata.jsonl) | |",
        "| captions embedded | none unless asked | 0 (video -> text: captions of the nearest videos) | yes |",
    ]
    if "load_s" in load:
        lines += [
            f"| `VideoIndex.load` of the {r['rows']:,}-row index | | {load['load_s']:.1f} s, peak RSS "
            f"{load['peak_rss_mib']:,.0f} MiB | |",
            f"| first search (builds the binary index), then p50 of 19 | | {load['first_search_s']:.1f} s, "
            f"{load['search_p50_ms']:.1f} ms | |",
        ]
    summary = next((line for line in reversed(imp["tail"]) if line.startswith("imported")), "")
    lines += ["", f"The command's last line: `{summary.replace(str(r['out']), 'DIR')}`" if summary else
              f"The command failed: {' / '.join(imp['tail'])}"]
    return "\n".join(lines) + "\n"
