"""Path probes against the running app: it serves the index's clips and nothing beside them.

An index built from a CSV of clips spread over many folders, next to files that must stay
private. Before the media route the app allowed Gradio to serve each clip's folder (the CSV's
whole folder, or above 32 folders their common parent, up to ``/``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import moving_square_clip, tiny_xclip

from demo.app.service import AppConfig, DemoService
from demo.app.ui import build_demo, launch, launch_options
from demo.index.build import build_index
from demo.index.items import items_from_csv
from demo.models.encoders import Clip4ClipEncoder

FOLDERS = 40  # more than the 32 folders past which the old code widened to a common parent


@pytest.fixture(scope="module")
def spread_app(tmp_path_factory: pytest.TempPathFactory,
               tiny_clip4clip: Path) -> Iterator[tuple[Any, DemoService, Path]]:
    root = tmp_path_factory.mktemp("spread")
    media = root / "media"
    rows = []
    for i in range(FOLDERS):
        clip = moving_square_clip(media / f"folder-{i:02d}" / "clip.mp4", 1 if i % 2 else -1, frames=8)
        rows.append((str(clip.relative_to(media)), f"a square number {i}"))
    (media / "secret.txt").write_text("not for the web\n")
    (media / "folder-00" / "notes.txt").write_text("private notes\n")
    table = media / "clips.csv"
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([("path", "caption"), *rows])
    encoder = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    build_index(items_from_csv(table), root / "index", encoder, progress=False, model_path=str(tiny_clip4clip),
                media_root=media)
    config = AppConfig(model=str(tiny_clip4clip), index=str(root / "index"), xclip=str(tiny_xclip(root / "xclip")),
                       device="cpu", cache_dir=str(root / "cache"))
    service = DemoService.load(config)
    demo = build_demo(service)
    launch(demo, service, server_name="127.0.0.1", quiet=True)
    yield demo, service, media
    demo.close()


def test_every_clip_plays_by_id(spread_app: tuple[Any, DemoService, Path]) -> None:
    demo, _, media = spread_app
    for i in range(FOLDERS):
        clip_id = f"folder-{i:02d}/clip.mp4"
        response = httpx.get(f"{demo.local_url}media/{clip_id}")
        assert response.status_code == 200, clip_id
        assert response.content == (media / clip_id).read_bytes()


@pytest.mark.parametrize("target", ["secret.txt", "clips.csv", "folder-00/notes.txt", "/etc/passwd",
                                    "~/.bashrc", "../index/manifest.json"])
def test_nothing_beside_the_clips_is_served(spread_app: tuple[Any, DemoService, Path], target: str) -> None:
    demo, _, media = spread_app
    path = Path(target).expanduser() if target.startswith(("/", "~")) else (media / target).resolve()
    for url in (f"{demo.local_url}gradio_api/file={path}", f"{demo.local_url}media/{target}",
                f"{demo.local_url}media/{path}"):
        assert httpx.get(url).status_code in (403, 404), url


def test_allowed_folders_are_ours_whatever_the_index(spread_app: tuple[Any, DemoService, Path]) -> None:
    """Gradio may serve files from the world-clip cache and the example clips only; the same
    whether the app listens on 127.0.0.1, on 0.0.0.0 or through a share link (the folders do
    not depend on how it is reached)."""
    _, service, media = spread_app
    allowed = [Path(p) for p in launch_options(service)["allowed_paths"]]
    assert all(not media.is_relative_to(p) and not p.is_relative_to(media) for p in allowed)
    assert {p.name for p in allowed} == {"cache", "examples"}


def test_config_names_no_server_folders(spread_app: tuple[Any, DemoService, Path], tiny_clip4clip: Path) -> None:
    """Gradio's /config holds the page header: it names the model and the index, not their folders."""
    demo, service, media = spread_app
    config = httpx.get(f"{demo.local_url}config").text
    index = str(service.searcher.index.root)
    assert index not in config and str(tiny_clip4clip) not in config
    assert str(media.parent) not in config  # nor any other folder under the test's root
    assert f'title=\\"{Path(index).name}\\"' in config or f'title="{Path(index).name}"' in config
