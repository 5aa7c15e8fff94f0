"""``python -m demo bench space``: the WebVid Space at its real size, on synthetic files, beside the default.

Per size (``--rows``; the full run: 1.5M and 5.4M rows):

1. files in the Searchium Space's layout (:func:`demo.bench.importing.write_searchium_layout`:
   float32 N x 512, packed sign codes N x 64, a CSV ``videoid,contentUrl,name``) under a temp dir,
   the rows clustered around a shared mean as CLIP embeddings are;
2. a tiny random CLIP with 512-d projections, saved with ``save_pretrained`` (the model's weights
   do not matter here: the index and the app's start-up do);
3. ``python -m demo index import`` (a child process, timed), which writes the first stage and the
   metadata table with the index;
4. ``VideoIndex.load`` in a child: seconds and anonymous memory (``RssAnon`` of
   ``/proc/PID/status``: what the process holds beyond mapped files);
5. the app, started through its HTTP server (``python app.py --index DIR --model DIR``) right after
   the embedded default in the same run: seconds to HTTP 200 on ``/`` and ``/config``, RssAnon of
   its process tree, the first search and the median of 20 through Gradio's API.

``--rows 200000`` (or any list) makes a short run; a 10M row runs only the load (step 4), on an
index written directly (the import of 10M float32 rows would need 20 GB of input files).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from demo.bench.app import running_app
from demo.bench.importing import run_measured, write_searchium_layout
from demo.presets import ROOT

log = logging.getLogger(__name__)
FULL_ROWS = (1_500_000, 5_400_000)
LOAD_ONLY_ROWS = 10_000_000
CLUSTERS = 2000  # the synthetic rows are CLIP-like: a shared mean, clusters, near neighbours
QUERIES = ("aerial view of a city at sunset", "a dog running in the park", "woman walking on the beach",
           "timelapse of clouds over mountains", "close up of water drops on a leaf")


def anon_mb(pid: int) -> float:
    """RssAnon of a process and its children, MiB (NaN when gone)."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for p in procs:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += float(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def tiny_clip(folder: Path) -> Path:
    """A random CLIP4Clip with 512-d projections (2 small layers a tower), meanP, 1 fps, saved."""
    import torch

    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import Clip4ClipSettings
    from demo.models.tokenizer import build_clip_tokenizer_files

    torch.manual_seed(0)
    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=77, projection_dim=512)
    vision = dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, projection_dim=512)
    Clip4Clip.from_config(text, vision, Clip4ClipSettings(pooling="meanP", sample_fps=1.0, max_frames=12,
                                                          max_words=32)).save_pretrained(folder)
    build_clip_tokenizer_files(folder)
    return folder


def drive_app(args: list[str], timeout_s: float = 600.0, searches: int = 20) -> dict[str, Any]:
    """Start ``python app.py ARGS``, time it to a usable page, search through the API, stop it."""
    from gradio_client import Client

    start = time.perf_counter()
    with running_app(ROOT, args, stop_timeout=20.0) as app_run:
        proc, output = app_run.proc, app_run.output
        ready = None
        while ready is None and time.perf_counter() - start < timeout_s and proc.poll() is None:
            if app_run.serves_page():
                ready = time.perf_counter() - start
            time.sleep(0.1)
        if ready is None:
            return {"skipped": f"no usable page ({''.join(output[-3:]).strip()[-300:]})"}
        base = app_run.base()
        client = Client(base + "/", verbose=False)
        times = []
        for i in range(searches + 1):
            t = time.perf_counter()
            client.predict(QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}"), 10, "binary + rerank",
                           api_name="/search_text")
            times.append(time.perf_counter() - t)
        time.sleep(1.0)
        return {"ready_s": round(ready, 2), "anon_mb": round(anon_mb(proc.pid), 1),
                "first_search_ms": round(1e3 * times[0], 1),
                "median_search_ms": round(1e3 * float(np.median(times[1:])), 1),
                "command": "python app.py " + " ".join(args)}


_LOAD = """
import json, time
t0 = time.perf_counter()
from demo.index.video_index import VideoIndex
t1 = time.perf_counter()
index = VideoIndex.load({out!r})
t2 = time.perf_counter()
anon = [l for l in open("/proc/self/status") if l.startswith("RssAnon")][0].split()[1]
print(json.dumps({{"load_s": t2 - t1, "import_s": t1 - t0, "rows": len(index), "anon_mb": int(anon) / 1024,
                  "first_stage": index.info.get("first_stage")}}))
"""


def measure_load(out: Path) -> dict[str, Any]:
    run = run_measured([sys.executable, "-c", _LOAD.format(out=str(out))], {**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        run.update(json.loads(run["tail"][-1]))
    except (IndexError, ValueError):
        pass
    return run


def bench_space_size(workdir: Path, rows: int, model: Path, default: dict[str, Any]) -> dict[str, Any]:
    files = write_searchium_layout(workdir / f"searchium-{rows}", rows, clusters=CLUSTERS)
    out = workdir / f"index-{rows}"
    imported = run_measured([sys.executable, "-m", "demo", "index", "import", "--embeddings", str(files["embeddings"]),
                             "--binary", str(files["binary"]), "--metadata", str(files["metadata"]), "--out", str(out),
                             "--model", str(model), "--captions", "none", "--overwrite"],
                            {**os.environ, "HF_HUB_OFFLINE": "1"})
    shutil.rmtree(files["embeddings"].parent, ignore_errors=True)  # the input files: disk back
    result: dict[str, Any] = {"rows": rows, "import": imported}
    if imported["exit_code"] != 0:
        return result
    result["load"] = measure_load(out)
    result["app"] = drive_app(["--index", str(out), "--model", str(model)])
    result["default"] = default
    result["targets"] = space_targets(result)
    shutil.rmtree(out, ignore_errors=True)
    return result


def space_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for this size, with what was measured."""
    app, d, n = r.get("app", {}), r.get("default", {}), r["rows"]
    if "ready_s" not in app or "ready_s" not in d:
        return []
    out = []
    if n >= 5_000_000:
        goals = [("ready", 2 * d["ready_s"], app["ready_s"], "s"),
                 ("anon", d["anon_mb"] + 1024, app["anon_mb"], "MiB")]
    else:
        goals = [("ready", 1.5 * d["ready_s"] + 3, app["ready_s"], "s"),
                 ("anon", d["anon_mb"] + 400, app["anon_mb"], "MiB"),
                 ("first search", 300.0, app["first_search_ms"], "ms"),
                 ("median search", 1.5 * d["median_search_ms"] + 10, app["median_search_ms"], "ms")]
    for name, goal, got, unit in goals:
        out.append({"target": f"{name} at {n:,} rows", "goal": f"<= {goal:.1f} {unit}", "measured": f"{got:.1f} {unit}",
                    "holds": bool(got <= goal)})
    return out


def bench_space(workdir: Path, rows: tuple[int, ...] = FULL_ROWS) -> dict[str, Any]:
    """Every size of ``rows`` (10M and more: the load alone), beside one run of the embedded default."""
    model = tiny_clip(workdir / "tiny-clip-512")
    default = drive_app([])
    results = []
    for n in rows:
        log.info("space: %d rows", n)
        results.append(bench_load_only(workdir, n) if n >= LOAD_ONLY_ROWS else
                       bench_space_size(workdir, n, model, default))
    return {"default": default, "results": results}


def bench_load_only(workdir: Path, rows: int, dim: int = 512) -> dict[str, Any]:
    """An index of ``rows`` random unit rows written directly (float16, codes, a table, its IVF), then loaded."""
    from demo.index.format import make_manifest
    from demo.index.stream import IndexStreamWriter
    from demo.models.fingerprint import ModelFingerprint

    out, rng, block = workdir / f"index-{rows}", np.random.default_rng(0), 65536
    fp = ModelFingerprint("synthetic", "meanP", dim, 224, 12, 1.0)
    started = time.perf_counter()
    with IndexStreamWriter(out, overwrite=True) as w:
        emb = w.open_array("embeddings", (rows, dim), np.float16)
        codes = w.open_array("codes", (rows, dim // 8), np.uint8)
        w.open_array("caption_embeddings", (0, dim), np.float16)
        w.open_array("caption_video", (0,), np.int64)
        for s in range(0, rows, block):
            x = rng.standard_normal((min(block, rows - s), dim), dtype=np.float32)
            x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
            emb.write(x)
            codes.write(np.packbits(x > 0, axis=1))
            w.metadata.add({"id": str(1_000_000 + s + i), "path": f"https://example.invalid/{s + i}.mp4",
                            "captions": [f"video {s + i}"]} for i in range(len(x)))
        w.commit(make_manifest(fp, rows, 0, "synthetic", {}), progress=True)
    written = time.perf_counter() - started
    load = measure_load(out)
    shutil.rmtree(out, ignore_errors=True)
    ok = "load_s" in load and load["load_s"] <= 3.0
    return {"rows": rows, "write_s": round(written, 1), "load": load,
            "targets": [{"target": f"VideoIndex.load at {rows:,} rows", "goal": "<= 3 s",
                         "measured": f"{load.get('load_s', float('nan')):.2f} s", "holds": ok}]}


def format_space_markdown(out: dict[str, Any], meta: dict[str, Any]) -> str:
    d = out["default"]
    lines = [f"`{meta['command']}` on {meta['date']}: {meta.get('cores', '?')} cores, other processes' CPU share "
             f"{meta.get('other_cpu_share', '?')}, load average after {meta.get('load_average_after', '?')}. "
             "Synthetic files in the Searchium layout, a tiny random 512-d CLIP; the app started through its HTTP "
             "server and driven through its API, beside the embedded default in the same run.", "",
             "| index | import | load | app ready | app RssAnon | first search | median search |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    if "ready_s" in d:
        lines.append(f"| embedded default | | | {d['ready_s']:.1f} s | {d['anon_mb']:,.0f} MiB | "
                     f"{d['first_search_ms']:.0f} ms | {d['median_search_ms']:.0f} ms |")
    for r in out["results"]:
        imp, load, app = r.get("import", {}), r.get("load", {}), r.get("app", {})
        cells = [f"{imp['seconds']:.0f} s (peak {imp['peak_rss_mib']:,.0f} MiB)" if imp else
                 f"written directly in {r.get('write_s', 0):.0f} s",
                 f"{load['load_s']:.2f} s, RssAnon {load['anon_mb']:,.0f} MiB" if "load_s" in load else "failed"]
        cells += ([f"{app['ready_s']:.1f} s", f"{app['anon_mb']:,.0f} MiB", f"{app['first_search_ms']:.0f} ms",
                   f"{app['median_search_ms']:.0f} ms"] if "ready_s" in app else ["", "", "", ""])
        lines.append(f"| {r['rows']:,} rows | " + " | ".join(cells) + " |")
    lines += ["", "| target | goal | measured | holds |", "|---|---|---|---|"]
    for r in out["results"]:
        lines += [f"| {t['target']} | {t['goal']} | {t['measured']} | {'yes' if t['holds'] else '**no**'} |"
                  for t in r.get("targets", [])]
    return "\n".join(lines) + "\n"
