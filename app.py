"""The front door: ``python app.py`` serves the video search demo (embedded models by default).

Builds the page from :mod:`demo.app.ui` around a :class:`demo.app.service.DemoService` and
launches it; no model code lives here. Private by default: no analytics, no share link
unless ``--share``, nothing fetched from the hub for the embedded preset.

    python app.py                      # the embedded preset, offline
    python app.py --preset webvid      # the WebVid models (or DEMO_PRESET=webvid)
    python app.py --model DIR --index DIR --xclip DIR --port 7861
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from demo.presets import POOLING_CHOICES

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Video search demo: CLIP4Clip search and X-CLIP classification")
    p.add_argument("--preset", help="embedded (default, offline) or webvid; env DEMO_PRESET")
    p.add_argument("--model", help="CLIP4Clip checkpoint folder or hub id (default: the index's model)")
    p.add_argument("--index", help="index folder built by `python -m demo index build`")
    p.add_argument("--xclip", help="X-CLIP checkpoint folder or hub id")
    p.add_argument("--pooling", choices=POOLING_CHOICES, help="override the checkpoint's pooling")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--cache", help="folder for rendered world clips (default: $DEMO_CACHE or cache/world)")
    p.add_argument("--eval-limit", type=int, help="test clips a CPU rerun of the benchmark scores (default: all)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0: every interface; env GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--concurrency", type=int, default=2, help="requests served at once per action")
    p.add_argument("--allow-rerun", action=argparse.BooleanOptionalAction, default=None,
                   help="let visitors rerun the benchmark (default: only when serving 127.0.0.1 without --share)")
    return p.parse_args(argv)


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, ``docker stop``) shuts down as Ctrl-C does: the server closes and the
    clip renderer and its resource tracker go with it, instead of being orphaned by an abrupt exit."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _serve(argv)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the server was up
        print("interrupted", file=sys.stderr)
        return 130


def _serve(argv: Sequence[str] | None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs each CPU-feature probe at INFO
    if threading.current_thread() is threading.main_thread():
        _stop_on_sigterm()
    if (args.preset or os.environ.get("DEMO_PRESET") or "embedded") == "embedded":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask the hub

    from demo.app.service import AppConfig, DemoService
    from demo.errors import DemoError

    public = args.share or args.host not in ("127.0.0.1", "localhost", "::1")
    config = AppConfig(preset=args.preset, model=args.model, index=args.index, xclip=args.xclip,
                       pooling=args.pooling, device=args.device, cache_dir=args.cache,
                       eval_limit=args.eval_limit, allow_rerun=args.allow_rerun, public=public)
    try:
        service = DemoService.load(config)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from demo.app.ui import UPLOAD_LIFETIME, build_demo, launch  # gradio: imported once there is something to serve
    from demo.app.uploads import sweep_on_start

    every, lifetime = UPLOAD_LIFETIME
    sweep_on_start(lifetime, every)  # uploads a stopped server left behind
    demo = build_demo(service)
    # A small queue: parallel users wait their turn instead of running N models at once.
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    service.warm_up()  # the first search finds the binary index built and torch's kernels loaded
    # quiet: Gradio's start-up lines name launch()'s share=True; ours name the address and --share
    launch(demo, service, server_name=args.host, server_port=args.port, share=args.share, quiet=True)
    where = demo.share_url or "--share for a public link"
    logging.getLogger("app").info("ready in %.1f s at %s (%s)", time.perf_counter() - started, demo.local_url, where)
    threading.Thread(target=service.prerender, name="prerender", daemon=True).start()
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
