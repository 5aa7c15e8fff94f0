"""Can the embedded ViT learn how an object is turned, and from how many turning clips?

    python scripts/angle_from_frames.py INIT [--worlds 0] [--minutes 5] [--lr 5e-4]

Fine-tunes the vision tower of the checkpoint ``INIT`` (e.g. a recipe's stage-0 ``frames/best``) plus
a linear readout on one target only: a lone turning object's angle code, cos and sin of (symmetry
order x angle), the layout probe's angle values (:func:`demo.world.frame_layout`). Training frames:
every 4th rendered frame of the single-object turning clips of the world's training split
(``--worlds 0``, about 690 clips) or of ``--worlds N`` other worlds' (seeds 1..N,
:func:`demo.world.turning_specs`); test frames: every 6th of the world's test-split turning clips.
Every 100 steps it prints the test R^2 of the readout, overall and per object size, then, at the end,
how often the readout's angles turn the right way between the 8 frames the model samples of a test
clip (the turning direction read off the frames alone, chance 50%), and how often the true codes of
those frames do (below 100% only where the sampled frames are too far apart for the shape's symmetry).
``--minutes 0`` trains nothing: the readout is a ridge regression on the frozen tower's embeddings (what a
checkpoint's frames carry).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: find demo/
from demo.models.clip4clip import Clip4Clip  # noqa: E402
from demo.train.probes import probe_inputs  # noqa: E402
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess  # noqa: E402
from demo.video.sampling import clip4clip_indices  # noqa: E402
from demo.world import LAYOUT_LONE, WorldConfig, clip_specs, frame_layout, render, turning_specs  # noqa: E402
from demo.world.corpus import TURNING  # noqa: E402


def angle_code(spec: object, i: int, last: int) -> list[float]:
    """The layout probe's angle values of frame ``i`` of ``last + 1``: cos, sin of (symmetry order x angle)."""
    values, _ = frame_layout(spec.attributes, i, last)  # type: ignore[attr-defined]
    return values[LAYOUT_LONE + 4 :].tolist()


def frames(specs: list, every: int, size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    pixels, codes, sizes = [], [], []
    for spec in specs:
        rendered = render(spec)
        picked = list(range(0, len(rendered), every))
        pixels.append(preprocess(rendered[picked], size, CLIP_MEAN, CLIP_STD))
        codes += [angle_code(spec, i, len(rendered) - 1) for i in picked]
        sizes += [spec.attributes.objects[0].size] * len(picked)
    return torch.cat(pixels), torch.tensor(codes), np.array(sizes)


def turn_of(codes: np.ndarray) -> float:
    """Summed turn between consecutive (cos, sin) angle codes: > 0 is clockwise on screen."""
    return float((codes[:-1, 0] * codes[1:, 1] - codes[:-1, 1] * codes[1:, 0]).sum())


def r2(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float(1 - ((pred - true) ** 2).sum() / ((true - true.mean(0)) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("init", help="CLIP4Clip checkpoint folder whose vision tower starts")
    parser.add_argument("--worlds", type=int, default=0, help="0: the world's own training clips")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = Clip4Clip.from_pretrained(args.init)
    vision, size, settings = model.vision, model.image_size, model.settings
    train = turning_specs((0,) if args.worlds == 0 else tuple(range(1, args.worlds + 1)))  # seed 0: the world
    test = [
        s
        for s in clip_specs(WorldConfig(), "test")
        if len(s.attributes.objects) == 1 and s.attributes.objects[0].event in TURNING
    ]
    x_train, y_train, _ = frames(train, 4, size)
    x_test, y_test, test_sizes = frames(test, 6, size)
    print(f"{len(train)} training clips ({len(x_train)} frames), {len(test)} test clips ({len(x_test)} frames)")
    readout = torch.nn.Linear(model.dim, 2)
    optimizer = torch.optim.AdamW([*vision.parameters(), *readout.parameters()], lr=args.lr)

    def features(pixels: torch.Tensor) -> torch.Tensor:  # what the layout probe reads
        return probe_inputs(vision(pixel_values=pixels).image_embeds)

    def predict(pixels: torch.Tensor) -> torch.Tensor:
        return readout(features(pixels))

    def in_batches(fn: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        vision.eval()
        with torch.inference_mode():
            return torch.cat([fn(pixels[i : i + 256]) for i in range(0, len(pixels), 256)])

    if args.minutes <= 0:  # the frozen tower: ridge regression onto the codes
        x = in_batches(features, x_train)
        x = torch.cat([x, torch.ones(len(x), 1)], 1)
        w = torch.linalg.solve(x.T @ x + 1e-1 * torch.eye(x.shape[1]), x.T @ y_train)
        with torch.no_grad():
            readout.weight.copy_(w[:-1].T)
            readout.bias.copy_(w[-1])
        print(f"frozen tower, ridge readout: test R^2 {r2(in_batches(predict, x_test), y_test):.3f}")
    step, started = 0, time.time()
    while time.time() - started < 60 * args.minutes:
        vision.train()
        batch = torch.randint(len(x_train), (args.batch_size,))
        loss = ((predict(x_train[batch]) - y_train[batch]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            pred = in_batches(predict, x_test)
            by_size = ", ".join(
                f"{s} {r2(pred[test_sizes == s], y_test[test_sizes == s]):.2f}" for s in ("small", "medium", "large")
            )
            print(
                f"step {step} ({time.time() - started:.0f} s): train loss {float(loss):.3f}, "
                f"test R^2 {r2(pred, y_test):.3f} ({by_size})",
                flush=True,
            )
    # The direction: the sign of the turn between the readout's angle codes of consecutive sampled frames.
    right, ceiling = [], []
    for spec in test:
        rendered = render(spec)
        shown = clip4clip_indices(len(rendered), spec.fps, settings.sample_fps, settings.max_frames)
        code = in_batches(predict, preprocess(rendered[shown], size, CLIP_MEAN, CLIP_STD)).numpy()
        true = np.array([angle_code(spec, int(i), len(rendered) - 1) for i in shown])
        clockwise = spec.attributes.objects[0].event == "turning clockwise"
        right.append((turn_of(code) > 0) == clockwise)
        ceiling.append((turn_of(true) > 0) == clockwise)
    print(
        f"turning direction from the readout's angles: {100 * np.mean(right):.1f}% of {len(right)} test clips "
        f"(from the true angle codes: {100 * np.mean(ceiling):.1f}%)"
    )


if __name__ == "__main__":
    main()
