"""The embedded X-CLIP: initialisation from CLIP4Clip, training, storage, evaluation, reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from demo.errors import InputError
from demo.files import markers
from demo.models.xclip import XClipClassifier
from demo.train.cards import write_xclip_card
from demo.train.recipes import XClipRecipe, train_embedded_xclip
from demo.train.xclip import (
    BENCH_SECTION,
    CLIP_TO_XCLIP,
    FOLDED,
    REVERSED_CLASS,
    REWORDED,
    XClipTrainConfig,
    build_xclip,
    clip_label,
    evaluate_xclip,
    map_name,
    read_labelled,
    train_xclip,
    training_phrasings,
    write_benchmarks,
    xclip_config,
)
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from demo.world import WorldConfig, clip_event, clip_specs, event_labels, synth
from demo.world.text import EVENT_PHRASES, RELATION_PHRASES
from tests.conftest import TINY_TEXT, TINY_VISION

TINY_WORLD = WorldConfig(seed=0, n_train=16, n_val=8, n_test=8, size=32)


@pytest.fixture(scope="module")
def c4c(tiny_clip4clip: Path) -> Path:
    """conftest's tiny CLIP4Clip (save_tiny_clip4clip): seqTransf head of 1 layer, 2 heads,
    6 frame positions."""
    return tiny_clip4clip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xclip-world")
    synth(out, TINY_WORLD, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(c4c: Path, world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, XClipTrainConfig]:
    out = tmp_path_factory.mktemp("xclip-run")
    config = XClipTrainConfig(world=str(world), init=str(c4c), out=str(out), epochs=16, batch_size=8,
                              lr=3e-3, vision_lr=3e-3, text_lr=1e-3, warmup=0.05, workers=1, synonyms=True,
                              val_limit=4)
    return train_xclip(config, progress=False), config


def test_config_is_sized_like_the_clip_checkpoint(c4c: Path) -> None:
    config = xclip_config(c4c, num_frames=8, prompt_layers=2)
    t, v = config.text_config, config.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.max_position_embeddings) == (
        TINY_TEXT["hidden_size"], TINY_TEXT["num_hidden_layers"], TINY_TEXT["max_position_embeddings"])
    assert (v.image_size, v.patch_size, v.hidden_size, v.num_hidden_layers) == (
        TINY_VISION["image_size"], TINY_VISION["patch_size"], TINY_VISION["hidden_size"],
        TINY_VISION["num_hidden_layers"])
    proj = TINY_TEXT["projection_dim"]
    assert config.projection_dim == v.mit_hidden_size == t.projection_dim == v.projection_dim == proj
    assert v.num_frames == 8 and config.prompt_layers == 2
    assert (v.mit_num_hidden_layers, v.mit_num_attention_heads) == (1, 2)  # the tiny head's depth and heads


def test_init_copies_every_shared_tensor(c4c: Path) -> None:
    model, report = build_xclip(c4c, num_frames=4)  # 4 <= the head's 6 positions: those copy too
    state = model.state_dict()
    clip = load_file(str(c4c / "model.safetensors"))
    head = load_file(str(c4c / "temporal_head.safetensors"))
    assert len(report.copied) + len(report.random) == len([k for k in state if "position_ids" not in k])
    mapped = {map_name(k, CLIP_TO_XCLIP) for k in clip} - {None}
    assert mapped <= set(report.copied)  # every CLIP tensor with a counterpart was used
    for name in report.copied:
        source = report.sources[name]
        if name in FOLDED:
            continue
        if source.endswith(("in_proj_weight", "in_proj_bias")):
            part = "qkv".index(name.split(".self_attn.")[1][0])
            expected = head[source].chunk(3)[part]
        elif name == "mit.position_embedding":
            expected = head[source][:4].unsqueeze(0)
        else:
            expected = clip[source] if source in clip else head[source]
        assert torch.equal(state[name], expected), name
    copied, random = set(report.copied), set(report.random)
    assert all(k in copied for k in state if k.startswith(("text_model.", "text_projection")))
    assert all(k in copied for k in state if k.startswith("vision_model.") and "message_" not in k
               and "position_ids" not in k)
    assert {k for k in state if k.startswith("mit.")} <= copied
    assert all(k.startswith(("prompts_", "vision_model.encoder.layers")) for k in random)
    assert any("message_attn" in k for k in random) and any("prompts_generator" in k for k in random)


@pytest.mark.parametrize("own", ["tdb", "tdb+tab"])
def test_a_clip2video_checkpoint_seeds_the_mit_with_its_frame_transformer(own: str, tmp_path: Path,
                                                                          make_tiny_clip4clip: Any) -> None:
    folder = make_tiny_clip4clip(tmp_path / own, pooling=own)
    model, report = build_xclip(folder, num_frames=4)
    head = load_file(str(folder / "temporal_head.safetensors"))
    assert {report.sources[k] for k in report.copied if k.startswith("mit.")} <= {
        k for k in head if k.startswith("transformer.") or k == "frame_position.weight"}
    state = model.state_dict()
    q = state["mit.encoder.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(q, head["transformer.layers.0.self_attn.in_proj_weight"].chunk(3)[0])


def test_folded_embeddings_see_imagenet_input_as_clip_saw_clip_input(c4c: Path) -> None:
    from transformers import CLIPVisionModelWithProjection

    model, _ = build_xclip(c4c)
    clip = CLIPVisionModelWithProjection.from_pretrained(c4c).eval()
    pixels = torch.rand(2, 3, TINY_VISION["image_size"], TINY_VISION["image_size"])

    def norm(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
        return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    with torch.no_grad():
        want = clip.vision_model.embeddings(norm(CLIP_MEAN, CLIP_STD))
        got = model.vision_model.embeddings(norm(IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_clip_label_is_clip_event_unless_ambiguous() -> None:
    specs = clip_specs(WorldConfig(seed=0, n_train=120, n_val=8, n_test=8), "train")
    labels = [clip_label(s.attributes) for s in specs]
    for spec, label in zip(specs, labels, strict=True):
        if label is not None:
            assert label == clip_event(spec)
        else:
            assert spec.attributes.relation is None
            assert len({o.event for o in spec.attributes.objects}) > 1
    assert 0 < labels.count(None) < len(labels) / 2


def test_reversed_class_matches_the_worlds_time_reversal_pairs() -> None:
    assert all(REVERSED_CLASS[REVERSED_CLASS[c]] == c for c in event_labels())
    pairs: dict[str, list[str | None]] = {}
    for spec in clip_specs(WorldConfig(seed=0, n_train=120, n_val=8, n_test=8), "train"):
        if spec.attributes.pair:
            pairs.setdefault(spec.attributes.pair, []).append(clip_label(spec.attributes))
    checked = [(a, b) for a, b in pairs.values() if a is not None and b is not None]
    assert checked and all(REVERSED_CLASS[a] == b for a, b in checked)


def test_reworded_labels_are_held_out_world_phrasings() -> None:
    assert list(REWORDED) == event_labels()
    phrases = {**EVENT_PHRASES, **RELATION_PHRASES}
    assert len(set(REWORDED.values())) == len(REWORDED)
    for label, reworded in REWORDED.items():
        assert reworded != label and reworded in [p for p, _ in phrases[label]]
    for label, options in zip(event_labels(), training_phrasings(event_labels()), strict=True):
        assert options[0] == label and REWORDED[label] not in options


def test_training_lowers_the_loss_and_ships_a_loadable_float16_checkpoint(
    trained: tuple[Path, XClipTrainConfig], world: Path
) -> None:
    best, config = trained
    log = [json.loads(line) for line in (Path(config.out) / "log.jsonl").read_text().splitlines()]
    assert len(log) == config.epochs
    assert sum(r["loss"] for r in log[-3:]) / 3 < 0.8 * log[0]["first_loss"]
    with safe_open(str(best / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    assert (best / "processor_config.json").is_file() or (best / "preprocessor_config.json").is_file()

    classifier = XClipClassifier.from_pretrained(best)
    assert {p.dtype for p in classifier.model.parameters()} == {torch.float32}
    assert (classifier.num_frames, classifier.image_size) == (8, TINY_VISION["image_size"])
    assert classifier.mean == pytest.approx(IMAGENET_MEAN) and classifier.std == pytest.approx(IMAGENET_STD)
    clips, _ = read_labelled(world / "test.jsonl")
    result = classifier.classify(clips[0].path, event_labels(), k=len(REWORDED))
    assert set(result.labels) == set(event_labels()) and sum(result.probs) == pytest.approx(1.0, abs=1e-4)


def test_evaluation_and_reports(trained: tuple[Path, XClipTrainConfig], world: Path, tmp_path: Path) -> None:
    best, config = trained
    results = [evaluate_xclip(best, world, "test", reworded=r, latency_runs=1) for r in (False, True)]
    clips, excluded = read_labelled(world / "test.jsonl")
    for r, kind in zip(results, ("canonical", "reworded"), strict=True):
        assert r["labels"] == kind and r["clips"] == len(clips) and r["excluded_ambiguous"] == excluded
        assert 0.0 <= r["top1"] <= 100.0 and r["latency_ms"] > 0
        assert set(r["per_class"]) <= set(event_labels())

    bench = tmp_path / "BENCHMARKS.md"
    begin, end = markers(BENCH_SECTION)  # BENCHMARKS.md's existing xclip:embedded markers
    other = "# Benchmarks\n\n<!-- evaluate:embedded -->\nR@1 42\n<!-- /evaluate:embedded -->\n"
    bench.write_text(other + f"\n{begin}\nNot yet run.\n{end}\n\ntail text\n")
    for _ in range(2):  # rewriting replaces the block, never duplicates it
        write_benchmarks(results, "python -m demo train --preset embedded-xclip", bench)
    text = bench.read_text()
    assert text.startswith(other) and text.rstrip().endswith("tail text")
    assert text.count(begin) == 1 and "Not yet run" not in text and begin == "<!-- xclip:embedded -->"
    assert f"| reworded | test | {len(clips)} | {results[1]['top1']:.1f} |" in text

    card = write_xclip_card(best, config, results, "python -m demo train --preset embedded-xclip")
    body = card.read_text()
    assert "python -m demo train --preset embedded-xclip" in body and "| canonical | test |" in body
    assert body.count("| 1 |") >= 1  # the per-epoch history


def test_recipe_needs_the_clip4clip_model_first(tmp_path: Path) -> None:
    from demo.cli import main

    with pytest.raises(InputError, match="--preset embedded` first"):
        train_embedded_xclip(XClipRecipe(work=str(tmp_path / "w"), out=str(tmp_path / "pre")))
    assert main(["train", "--preset", "embedded-xclip", "--out", str(tmp_path / "pre")]) == 2
    assert not (tmp_path / "w").exists()  # failed before rendering anything


def test_evaluate_only_rewrites_the_benchmarks_section(trained: tuple[Path, XClipTrainConfig], world: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m demo train --preset embedded-xclip --evaluate-only`` (once ``python -m demo.train.xclip
    MODEL WORLD``): the shipped X-CLIP re-evaluated on the world's test split, no training."""
    import shutil

    from demo.cli import main

    best, _ = trained
    out, work = tmp_path / "pre", tmp_path / "w"
    shutil.copytree(best, out / "xclip-world")
    work.mkdir()
    (work / "world").symlink_to(world)
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\nintro\n")
    assert main(["train", "--preset", "embedded-xclip", "--evaluate-only", "--out", str(out), "--work", str(work),
                 "--benchmarks", str(bench)]) == 0
    printed = capsys.readouterr().out
    assert "| canonical | test |" in printed and "| reworded | test |" in printed
    text = bench.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n") and text.count(markers(BENCH_SECTION)[0]) == 1
    assert "`python -m demo train --preset embedded-xclip --out" in text and " --evaluate-only " in text
    assert not (tmp_path / "w" / "xclip").exists()  # nothing trained
