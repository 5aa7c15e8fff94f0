"""``python -m demo index build ... --engine ray``: decoding and encoding on a Ray cluster.

The pipeline is Ray Data's, not a scheduler of ours:

- a dataset of the items still to do (:func:`demo.index.build.plan_work`: a rerun skips what
  the work folder holds);
- ``map(decode_group)``: reading (local paths or http(s) URLs), decoding and frame sampling as
  map tasks on CPUs, a batch of videos per task (:func:`groups`: the local builder's batches);
- ``map_batches(FrameEncoderActor)``: the encoder in an actor pool, one model per actor, one GPU
  per actor when the cluster has GPUs; actors lost with their node are restarted and their
  batches retried;
- the driver streams the results back and writes each batch as a shard of the local builder's
  work folder (``<out>.partial/``: the same layout, so either engine resumes the other's
  build), and files that failed into ``failed.jsonl``;
- the captions go through a second pool (``TextEncoderActor``), then
  :func:`demo.index.merge.merge_index` writes the index folder (streamed, atomic, manifest last).

The driver is the work folder's one writer (it holds the index's lock), so the cluster needs no
shared file system: the embeddings (2 KB a video) travel back through Ray's object store.
Killing the driver loses at most the batches in flight; rerunning the command skips every
finished shard and writes the same index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from demo.errors import DemoError, IndexFormatError
from demo.index.build import BuildReport, check_request, media_root_entry, plan_work
from demo.index.engines.workers import (
    FAIL_ONCE_ENV,
    FrameEncoderActor,
    Sampling,
    TextEncoderActor,
    decode_group,
)
from demo.index.format import PARTIAL_SUFFIX
from demo.index.items import VideoItem
from demo.index.lock import writer_lock
from demo.index.merge import CaptionStream, ShardLedger, merge_index
from demo.index.store import disk_error
from demo.models.fingerprint import ModelFingerprint
from demo.presets import Preset

log = logging.getLogger(__name__)
INSTALL_HINT = "the Ray engine needs Ray: pip install -r requirements-scale.txt"
# Settings the workers must share with the driver (an offline hub, its cache, the test hook).
# With this at "0" Ray treats the machine as a single-node cluster and listens on 127.0.0.1 (as it
# does on macOS) instead of the machine's network address: a local Ray is not reachable from outside.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_ENDPOINT", "GRADIO_ANALYTICS_ENABLED", FAIL_ONCE_ENV)
# Test hook: seconds the driver waits after each shard it writes, so that a test can kill it between two
# shards (results can arrive several at once and be written within milliseconds).
SHARD_PAUSE_ENV = "DEMO_RAY_SHARD_PAUSE"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs."""

    address: str | None = None  # a cluster ("ray://host:10001", "auto"); None: a local Ray on this machine
    workers: int | None = None  # encoder actors (None: one per GPU when the cluster has GPUs, else one)
    batch_size: int = 8  # videos per encoder call, and per shard
    num_cpus: int | None = None  # CPUs of the local Ray (None: all); ignored with an address
    text_batch_size: int = 64  # captions per text-encoder call
    device: str | None = None  # encoder device (None: cuda on a GPU actor, else cpu)


def _connect(options: RayOptions) -> Any:
    if not options.address:  # a local Ray on the loopback only (set before Ray is imported; see LOOPBACK_ENV)
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as err:
        raise DemoError(INSTALL_HINT) from err
    if not ray.is_initialized():
        env: dict[str, Any] = {"env_vars": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
        if options.address:  # the library travels with the job: a cluster's nodes need not have it
            env["py_modules"] = [str(Path(__file__).resolve().parents[2])]
        ray.init(address=options.address, num_cpus=None if options.address else options.num_cpus,
                 runtime_env=env, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False  # the build shows its own bar
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # and Ray Data's periodic progress lines
    return ray


def _actor_args(ray: Any, options: RayOptions, preset: Preset) -> dict[str, Any]:
    gpus = int(ray.cluster_resources().get("GPU", 0))
    workers = options.workers or max(1, gpus)
    device = options.device or ("cuda" if gpus else "cpu")
    return dict(fn_constructor_kwargs=dict(preset=preset, device=device, threads=None if gpus else 1),
                # Ray Data restarts a lost actor and retries its batch (max_restarts=-1 by default)
                compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if gpus else 0, num_cpus=1)


def groups(items: list[VideoItem], todo: list[VideoItem], size: int) -> list[list[VideoItem]]:
    """The batches to encode: runs of ``size`` items of the whole list, less what is done.

    A fresh build gets the local builder's batches, and a resumed one the same batches as
    the run it continues (minus finished videos), whichever shards finished first.
    """
    wanted = {it.id for it in todo}
    runs = ([it for it in items[s : s + size] if it.id in wanted] for s in range(0, len(items), size))
    return [run for run in runs if run]


def _blocks(rows: int, per_block: int) -> int:
    return max(1, min(rows, 4096 * per_block) // per_block)


def _frame_batches(ray: Any, batches: list[list[VideoItem]], fp: ModelFingerprint, options: RayOptions,
                   preset: Preset) -> Iterator[dict[str, np.ndarray]]:
    rows = [{"ids": json.dumps([it.id for it in b]), "paths": json.dumps([it.path for it in b])} for b in batches]
    ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), 1))
    # a decode task lost with its worker is retried by Ray (3 times, its default for tasks)
    ds = ds.map(decode_group, fn_kwargs={"sampling": Sampling.of(fp), "slots": options.batch_size}, num_cpus=1)
    ds = ds.map_batches(FrameEncoderActor, batch_size=1, batch_format="numpy",
                        **_actor_args(ray, options, preset))
    yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2)


def _embed(ray: Any, ledger: ShardLedger, batches: list[list[VideoItem]], total: int, fp: ModelFingerprint,
           options: RayOptions, preset: Preset, progress: bool) -> None:
    """Run the pipeline over ``batches``; each result becomes a shard (its failures: failed.jsonl)."""
    by_id = {it.id: it for b in batches for it in b}
    todo = len(by_id)
    pause = float(os.environ.get(SHARD_PAUSE_ENV) or 0)
    bar = tqdm(total=total, initial=total - todo, desc="indexing (ray)", unit="video", disable=not progress)
    try:
        for out in _frame_batches(ray, batches, fp, options, preset) if batches else ():
            for ids_json, errors_json, emb in zip(out["ids"], out["errors"], out["embedding"], strict=True):
                ids, errors = json.loads(str(ids_json)), json.loads(str(errors_json))
                ok = [j for j, e in enumerate(errors) if not e]
                if ok and not np.isfinite(emb[ok]).all():
                    raise ValueError(f"the encoder gave non-finite embeddings for {[ids[j] for j in ok]}")
                if ok:
                    ledger.add_shard([ids[j] for j in ok], np.asarray(emb[ok], dtype=np.float32))
                    if pause:
                        time.sleep(pause)
                for j in (j for j, e in enumerate(errors) if e):  # after the shard: a kill in between retries
                    ledger.add_failure(by_id[ids[j]], errors[j])
                bar.update(len(ids))
    finally:
        bar.close()


def _caption_stream(ray: Any, options: RayOptions, preset: Preset) -> CaptionStream:
    size = options.text_batch_size

    def encode(texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rows = [{"start": s, "texts": json.dumps(texts[s : s + size])} for s in range(0, len(texts), size)]
        ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), 1))
        args = _actor_args(ray, options, preset)
        args["fn_constructor_kwargs"]["slots"] = size
        ds = ds.map_batches(TextEncoderActor, batch_size=1, batch_format="numpy", **args)
        for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            for start, count, emb in zip(out["start"], out["count"], out["embedding"], strict=True):
                yield np.arange(int(start), int(start) + int(count)), emb[: int(count)]

    return encode


def fingerprint_of(preset: Preset) -> ModelFingerprint:
    """The preset's model fingerprint, for the work folder and the manifest (the driver loads the model
    once, on the CPU, and drops it: every node loads its own copy)."""
    return preset.open_encoder("cpu").fingerprint


def build_index_ray(items: list[VideoItem], out_dir: str | Path, preset: Preset, options: RayOptions | None = None,
                    overwrite: bool = False, media_root: str | Path | None = None,
                    retry_failed: bool = False, progress: bool = True) -> BuildReport:
    """:func:`demo.index.build.build_index` on Ray: the same work folder, resume rules, failure list
    and index (same ids and order, embeddings equal to float32 noise). ``preset`` (resolved once by
    the caller) names the model, a checkpoint folder or hub id that every node can load, with its
    pooling, frame sampling and resizing, which every decode task and actor applies as the local
    engine does. Raises DemoError without Ray installed."""
    items, out, options = list(items), Path(out_dir), options or RayOptions()
    check_request(items, out, options.batch_size, overwrite)
    ray = _connect(options)
    fp = fingerprint_of(preset)
    with writer_lock(out):
        work = out.with_name(out.name + PARTIAL_SUFFIX)
        try:
            ledger = ShardLedger(work, fp)
            plan = plan_work(items, ledger.done.keys(), ledger.failed, retry_failed, work)
            _embed(ray, ledger, groups(items, plan.todo, options.batch_size), len(items), fp, options,
                   preset, progress)
            skipped = [(ledger.failed[it.id].path, ledger.failed[it.id].reason) for it in items
                       if it.id in ledger.failed]
            if not any(it.id in ledger.done for it in items):
                raise IndexFormatError(f"no video could be decoded ({len(skipped)} tried); the failures are "
                                       f"listed in {work / 'failed.jsonl'}")
            info: dict[str, Any] = {"model_path": preset.model}
            if media_root:
                info["media_root"] = media_root_entry(media_root, out)
            indexed = merge_index(ledger, items, out, fp, _caption_stream(ray, options, preset), info,
                                  overwrite)
        except OSError as err:
            raise disk_error(err, f"the work folder {work}") from err
    shutil.rmtree(work, ignore_errors=True)
    not_retried = [(f.path, f.reason) for i, f in plan.earlier.items() if i not in plan.again and i in ledger.failed]
    log.info("indexed %d videos into %s on Ray (%d skipped, %d resumed)", indexed, out, len(skipped),
             plan.resumed_from)
    return BuildReport(indexed=indexed, skipped=skipped, resumed_from=plan.resumed_from, not_retried=not_retried)

