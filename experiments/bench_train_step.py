"""Training-step throughput: our step (frozen backbone without autograd graph, optional bf16 autocast) against a
naive step (backbone parameters left with requires_grad, so the graph and the gradients go through it).

    python experiments/bench_train_step.py [--size 299] [--batch 4] [--rounds 3] [--backbone inception_resnet_v2]

Both steps run the same network (same weights, channels-last like the LightningModule), the Eq. 3 loss and Adam on
the head; they are timed interleaved, round by round, in the same run (medians reported), so that other load on
the machine hits both alike. The naive step also computes gradients for the frozen backbone (and trains nothing
more with them): that is the cost of forgetting ``no_grad``/``requires_grad_(False)``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtfcdd.inference.cpu import cpu_supports_bf16
from mtfcdd.measure.timing import time_rounds
from mtfcdd.model.components.backbones import FrozenBackbone
from mtfcdd.model.multitype_fcdd.loss import MultiTypeFCDDLoss
from mtfcdd.model.multitype_fcdd.network import MultiTypeFCDD, pseudo_huber


def ours(net: MultiTypeFCDD, images: torch.Tensor) -> torch.Tensor:
    """The project's training forward: ``features()`` runs the backbone under no_grad (and autocast if set)."""
    return net(images, upsample=False).scores


def naive(net: MultiTypeFCDD, images: torch.Tensor) -> torch.Tensor:
    """The same computation with the autograd graph built through the backbone."""
    return pseudo_huber(net.head(net.backbone(images))).mean(dim=(2, 3))


def make_step(net, forward, images, labels):
    """A closure running one training step (``forward``, Eq. 3 loss, backward, Adam on the head) that returns the
    loss."""
    loss_fn = MultiTypeFCDDLoss()
    optimizer = torch.optim.Adam(net.head.parameters(), lr=1e-4)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(net, images), labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main(argv: list[str] | None = None) -> dict:
    """Time our training step against the naive one (and bf16 where chosen); print a table and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="inception_resnet_v2")
    parser.add_argument("--head-width", type=int, default=512)
    parser.add_argument("--types", type=int, default=8)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument(
        "--autocast",
        choices=["auto", "bf16", "none"],
        default="auto",
        help="extra row with the backbone under bf16 autocast (auto: only where the CPU runs bf16 natively)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    base = MultiTypeFCDD(FrozenBackbone(args.backbone, pretrained=False), args.types, args.head_width).train()
    fmt = torch.contiguous_format if args.no_channels_last else torch.channels_last
    base = base.to(memory_format=fmt)
    images = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=fmt)
    labels = torch.zeros(args.batch, args.types)
    labels[0, 0] = 1.0

    candidates = {}
    net_ours = copy.deepcopy(base)
    candidates["ours (backbone no_grad)"] = make_step(net_ours, ours, images, labels)
    net_naive = copy.deepcopy(base)
    for parameter in net_naive.backbone.parameters():
        parameter.requires_grad_(True)
    candidates["naive (graph through backbone)"] = make_step(net_naive, naive, images, labels)
    use_bf16 = args.autocast == "bf16" or (args.autocast == "auto" and cpu_supports_bf16())
    if use_bf16:
        net_bf16 = copy.deepcopy(base)
        net_bf16.backbone_autocast = torch.bfloat16
        candidates["ours + bf16 backbone autocast"] = make_step(net_bf16, ours, images, labels)

    times = time_rounds(candidates, rounds=args.rounds, warmup=args.warmup)

    naive_median = statistics.median(times["naive (graph through backbone)"])
    results = {
        "backbone": args.backbone,
        "head_width": args.head_width,
        "types": args.types,
        "size": args.size,
        "batch": args.batch,
        "rounds": args.rounds,
        "channels_last": not args.no_channels_last,
        "threads": torch.get_num_threads(),
        "native_bf16": cpu_supports_bf16(),
        "rows": {},
    }
    print(
        f"training step, {args.backbone} cut + head {args.head_width}, M = {args.types}, "
        f"{args.size}x{args.size}, batch {args.batch}, {torch.get_num_threads()} threads, "
        f"median of {args.rounds} interleaved rounds; native bf16: {cpu_supports_bf16()}"
    )
    print("| step | s/step | images/s | x naive |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        row = {
            "s_per_step": median,
            "images_per_s": args.batch / median,
            "speedup_vs_naive": naive_median / median,
            "all_s": [round(v, 3) for v in values],
        }
        results["rows"][name] = row
        print(f"| {name} | {median:.2f} | {row['images_per_s']:.2f} | {row['speedup_vs_naive']:.2f} |")
    if not use_bf16:
        print("(bf16 autocast row skipped: this CPU has no native bf16; pass --autocast bf16 to time it anyway)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
