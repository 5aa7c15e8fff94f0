"""Why a CLIP4Clip checkpoint does or does not tell a clip from its time reversal, or one shape from another.

    python scripts/diagnose_direction.py MODEL_DIR [--world work/embedded/world] [--probe-only]

Prints the numbers behind BENCHMARKS.md's "Training runs compared":

1. the cosine between captions of opposite events ("a red circle moving left" / "... right"), and for
   each of the 12 events the caption of another event nearest to it (``--captions-only``: this alone);
2. per event, how often the model scores a test clip's canonical caption higher on the clip
   than on its time-reversed twin, with meanP and with each temporal head of the checkpoint;
3. a linear probe on frame embeddings: R^2 of ridge regression from one frame's embedding to
   the object's x, y, radius and opacity in that frame (3 rendered frames of each of the first
   300 single-object test clips, 70/30 split);
4. a linear probe for shape: ridge regression from the middle frame's embedding to a one-hot
   shape, fitted on 1,500 single-object training clips that keep their size (moving, bouncing,
   staying still), accuracy on 400 such test clips, overall and per size (chance 12.5%);
5. a linear probe for motion: ridge regression from (last - first frame embedding) of single-object
   clips moving left, right, up or down to the direction (800 training clips, 300 test clips),
   accuracy per direction, and the size of each direction's mean difference (do the frames
   themselves tell up from down?).

Part 2 needs the rendered test split (``python -m demo synth --out work/embedded/world``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: find demo/
from demo.models.encoders import Clip4ClipEncoder  # noqa: E402
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess  # noqa: E402
from demo.world import EVENTS, SHAPES, WorldConfig, clip_specs, object_state, render  # noqa: E402

OPPOSITES = [("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking"),
             ("appearing", "disappearing"), ("turning clockwise", "turning anticlockwise")]


def caption_cosines(model: str) -> None:
    enc = Clip4ClipEncoder.from_pretrained(model)
    pairs = [(f"a red circle {a}", f"a red circle {b}") for a, b in OPPOSITES]
    pairs += [("a red circle moving left", "a red square moving left"),  # shape
              ("a red circle moving left", "a blue circle moving left")]  # colour
    for a, b in pairs:
        e = enc.encode_texts([a, b])
        print(f"cosine({a!r}, {b!r}) = {float(e[0] @ e[1]):.4f}")
    # The plain caption embeddings (a tdb+tab checkpoint's own are wider, half of them the plain ones).
    e = enc.encode_texts([f"a red circle {event}" for event in EVENTS], pooling="meanP")
    cos = e @ e.T - 2 * np.eye(len(EVENTS))
    nearest = ", ".join(f"{a} ~ {EVENTS[int(cos[i].argmax())]} {cos[i].max():.3f}" for i, a in enumerate(EVENTS))
    print(f"nearest other event caption ('a red circle ...'): {nearest}")


def twin_ordering(model: str, world: Path) -> None:
    rows = [json.loads(line) for line in (world / "test.jsonl").read_text().splitlines() if line.strip()]
    pairs: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r["attributes"].get("pair"):
            pairs[r["attributes"]["pair"]].append(i)
    idx = [i for members in pairs.values() if len(members) == 2 for i in members]  # twins adjacent
    event = [rows[i]["attributes"]["relation"] or rows[i]["attributes"]["objects"][0]["event"] for i in idx]
    for pooling in ("meanP", *sorted(Clip4ClipEncoder.from_pretrained(model).model.heads)):
        enc = Clip4ClipEncoder.from_pretrained(model, pooling=pooling)
        videos = enc.encode_videos([world / rows[i]["path"] for i in idx])
        scores = enc.encode_texts([rows[i]["captions"][0] for i in idx]) @ videos.T
        won: dict[str, list[bool]] = defaultdict(list)
        for j in range(len(idx)):
            won[event[j]].append(bool(scores[j, j] > scores[j, j ^ 1]))
        cells = ", ".join(f"{e} {100 * np.mean(w):.0f}% ({len(w)})" for e, w in sorted(won.items()))
        print(f"{pooling}: own clip above its reversed twin: {cells}")


def frame_probe(model: str, clips: int = 300, seed: int = 0) -> None:
    enc = Clip4ClipEncoder.from_pretrained(model)
    specs = [s for s in clip_specs(WorldConfig(), "test") if len(s.attributes.objects) == 1][:clips]
    rng = np.random.default_rng(seed)
    features, targets = [], []
    for spec in specs:
        frames = render(spec)
        pick = rng.choice(len(frames), 3, replace=False)
        pixels = preprocess(frames[pick], enc.model.image_size, CLIP_MEAN, CLIP_STD)
        with torch.inference_mode():
            features.append(enc.model.vision(pixel_values=pixels).image_embeds.numpy())
        obj = spec.attributes.objects[0]
        for i in pick:
            x, y, radius, _, opacity = object_state(obj, int(i), len(frames) - 1)
            targets.append([x, y, radius, opacity])
    x_all = np.hstack([np.concatenate(features), np.ones((len(targets), 1))])
    y_all, cut = np.array(targets), int(0.7 * len(targets))
    gram = x_all[:cut].T @ x_all[:cut] + 1e-2 * np.eye(x_all.shape[1])
    for k, name in enumerate(("x", "y", "radius", "opacity")):
        w = np.linalg.solve(gram, x_all[:cut].T @ y_all[:cut, k])
        pred, true = x_all[cut:] @ w, y_all[cut:, k]
        print(f"probe {name}: R^2 {1 - ((pred - true) ** 2).sum() / ((true - true.mean()) ** 2).sum():.2f}")


STEADY = ("moving left", "moving right", "moving up", "moving down", "bouncing", "staying still")


def lone_specs(split: str, events: tuple[str, ...], n: int) -> list[Any]:
    """The first ``n`` clips of ``split`` with a single object doing one of ``events``."""
    return [s for s in clip_specs(WorldConfig(), split)
            if len(s.attributes.objects) == 1 and s.attributes.objects[0].event in events][:n]


def unit_embeddings(enc: Clip4ClipEncoder, frames: np.ndarray) -> np.ndarray:
    """(F, D) unit-length vision-tower embeddings of rendered frames."""
    pixels = preprocess(frames, enc.model.image_size, CLIP_MEAN, CLIP_STD)
    with torch.inference_mode():
        x = enc.model.vision(pixel_values=pixels).image_embeds.numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ridge_classify(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int) -> np.ndarray:
    """Class guesses for ``x_test`` of a ridge regression (with bias) onto one-hot labels."""
    a_train, a_test = (np.hstack([x, np.ones((len(x), 1))]) for x in (x_train, x_test))
    w = np.linalg.solve(a_train.T @ a_train + 1e-2 * np.eye(a_train.shape[1]), a_train.T @ np.eye(classes)[y_train])
    return (a_test @ w).argmax(1)


def shape_probe(model: str, train_clips: int = 1500, test_clips: int = 400) -> None:
    enc = Clip4ClipEncoder.from_pretrained(model)

    def middle_frames(split: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features, shapes, sizes = [], [], []
        for spec in lone_specs(split, STEADY, n):
            frames = render(spec)
            features.append(unit_embeddings(enc, frames[[len(frames) // 2]])[0])
            obj = spec.attributes.objects[0]
            shapes.append(SHAPES.index(obj.shape))
            sizes.append(obj.size)
        return np.array(features), np.array(shapes), np.array(sizes)

    x_train, y_train, _ = middle_frames("train", train_clips)
    x_test, y_test, sizes = middle_frames("test", test_clips)
    right = ridge_classify(x_train, y_train, x_test, len(SHAPES)) == y_test
    per_size = ", ".join(f"{s} {100 * right[sizes == s].mean():.0f}%" for s in ("small", "medium", "large"))
    print(f"shape probe: {100 * right.mean():.1f}% of {len(right)} test clips ({per_size}; chance 12.5%)")


MOTIONS = ("moving left", "moving right", "moving up", "moving down")


def motion_probe(model: str, train_clips: int = 800, test_clips: int = 300) -> None:
    enc = Clip4ClipEncoder.from_pretrained(model)

    def differences(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows, labels = [], []
        for spec in lone_specs(split, MOTIONS, n):
            frames = render(spec)
            ends = unit_embeddings(enc, frames[[0, len(frames) - 1]])
            rows.append(ends[1] - ends[0])
            labels.append(MOTIONS.index(spec.attributes.objects[0].event))
        return np.array(rows), np.array(labels)

    x_train, y_train = differences("train", train_clips)
    x_test, y_test = differences("test", test_clips)
    guess = ridge_classify(x_train, y_train, x_test, len(MOTIONS))
    cells = ", ".join(f"{m} {100 * (guess[y_test == k] == k).mean():.0f}% "
                      f"(|mean difference| {np.linalg.norm(x_train[y_train == k].mean(0)):.2f})"
                      for k, m in enumerate(MOTIONS))
    print(f"motion probe on (last - first frame): {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--world", default="work/embedded/world", type=Path)
    parser.add_argument("--probe-only", action="store_true", help="only the frame probes (parts 3-5)")
    parser.add_argument("--captions-only", action="store_true", help="only the caption cosines (part 1)")
    args = parser.parse_args()
    if args.captions_only:
        caption_cosines(args.model)
        return
    if not args.probe_only:
        caption_cosines(args.model)
        twin_ordering(args.model, args.world)
    frame_probe(args.model)
    shape_probe(args.model)
    motion_probe(args.model)


if __name__ == "__main__":
    main()
