"""How fast the embedded ViT learns shape from scratch when told it directly.

    python scripts/shape_from_scratch.py [--image-size 64 --patch-size 8]
                                         [--clips 2000] [--epochs 8] [--lr 1e-3]

Trains the embedded model's vision tower (``demo.train.recipes.EMBEDDED_MODEL``, random init with the
recipe's sin-cos patch positions) plus a linear classifier on the shape of lone objects: the
middle frame of the first ``--clips`` single-object training clips of the world, cross-entropy
over the 8 shapes, AdamW with a 10% warm-up. Prints validation accuracy (300 single-object
validation clips, chance 12.5%) after each epoch: the 24% behind the DCT row of
docs/decisions/left-off-training-options.md (the DCT variant went with the option).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: find demo/
from demo.models.clip4clip import Clip4Clip, Clip4ClipSettings  # noqa: E402
from demo.train.recipes import EMBEDDED_MODEL  # noqa: E402
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess  # noqa: E402
from demo.world import SHAPES, WorldConfig, clip_specs, render  # noqa: E402


def middle_frames(split: str, n: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    specs = [s for s in clip_specs(WorldConfig(), split) if len(s.attributes.objects) == 1][:n]
    pixels, shapes = [], []
    for spec in specs:
        frames = render(spec)
        pixels.append(preprocess(frames[[len(frames) // 2]], image_size, CLIP_MEAN, CLIP_STD))
        shapes.append(SHAPES.index(spec.attributes.objects[0].shape))
    return torch.cat(pixels), torch.tensor(shapes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=int(EMBEDDED_MODEL["vision"]["image_size"]))
    parser.add_argument("--patch-size", type=int, default=int(EMBEDDED_MODEL["vision"]["patch_size"]))
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    size = args.image_size
    vision = {**EMBEDDED_MODEL["vision"], "image_size": size, "patch_size": args.patch_size}
    x_train, y_train = middle_frames("train", args.clips, size)
    x_val, y_val = middle_frames("val", 300, size)
    model = Clip4Clip.from_config(EMBEDDED_MODEL["text"], vision,
                                  Clip4ClipSettings(**EMBEDDED_MODEL["clip4clip"]),
                                  position_scale=float(EMBEDDED_MODEL["init"]["position_scale"])).vision
    classifier = torch.nn.Linear(int(EMBEDDED_MODEL["vision"]["projection_dim"]), len(SHAPES))
    optimizer = torch.optim.AdamW([*model.parameters(), *classifier.parameters()], lr=args.lr)
    steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
    step, started = 0, time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(x_train)).split(args.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / (0.1 * steps))
            logits = classifier(model(pixel_values=x_train[batch]).image_embeds)
            loss = torch.nn.functional.cross_entropy(logits, y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.inference_mode():
            accuracy = (classifier(model(pixel_values=x_val).image_embeds).argmax(1) == y_val).float().mean()
        print(f"epoch {epoch}: val shape accuracy {100 * float(accuracy):.1f}% ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
