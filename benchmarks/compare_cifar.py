"""Our `paper` and `bn` GoogLeNets against `torchvision.models.googlenet`, trained by the same loop.

Issue 3's real-image comparison: `../shared/data/cifar10-mini` (10 classes, 200 train + 50 val images
per class) at 64x64 input, 12 epochs, every model trained by `googlenet.train.loop.train_one_epoch`
with the same data, augmentation (section 6), optimiser, schedule, gradient clipping, seed and budget; evaluated raw and
Polyak-averaged (uniform average of the second half, `torch.optim.swa_utils`, BatchNorm statistics
recomputed for the BN models). torchvision's model is used as torchvision ships it
(`googlenet(weights=None, aux_logits=True, init_weights=True)`); in training mode it returns
(logits, aux2, aux1), which the loop reads as main + auxiliary heads.

    .venv/bin/python benchmarks/compare_cifar.py --json benchmarks/results/compare_cifar.json
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader

import googlenet
from googlenet.bench.command import positive_int, save_run
from googlenet.data.datasets import load_image_folder
from googlenet.data.transforms import AugmentConfig, build_eval_transform, build_train_transform
from googlenet.train.loop import evaluate, train_one_epoch
from googlenet.train.params import describe_groups, parameter_groups

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-mini"


class _Train(nn.Module):
    """Our model through `forward_train` (all heads), so the loop sees (main, aux1, aux2)."""

    def __init__(self, model: googlenet.GoogLeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        return tuple(self.model.forward_train(x)) if self.training else self.model(x)


def build(name: str, classes: int) -> tuple[nn.Module, nn.Module]:
    """(module the loop trains, module evaluated)."""
    if name == "torchvision":
        model = torchvision.models.googlenet(
            weights=None, num_classes=classes, aux_logits=True, init_weights=True
        )
        return model, model
    variant, overrides = parse_name(name)
    ours = googlenet.build_model(variant, num_classes=classes, **overrides)
    return _Train(ours), ours


def parse_name(name: str) -> tuple[str, dict[str, object]]:
    """ "bn+truncnormal": the bn variant with torchvision's init; "paper+dropout=0.2": a ModelConfig field
    set to a number. ValueError names the part that is not a number."""
    variant, *extras = name.split("+")
    overrides: dict[str, object] = {}
    for extra in extras:
        key, is_field, value = extra.partition("=")
        if not is_field:
            overrides["init"] = extra
            continue
        try:
            overrides[key] = float(value)
        except ValueError:
            raise ValueError(f"--models {name}: {key}={value!r} is not a number") from None
    return variant, overrides


def lr_factor(step: int, schedule: str, warmup: int, steps: int, steps_per_epoch: int) -> float:
    """The learning rate at optimiser step `step` as a fraction of --lr: linear warm-up from 1%, then
    cosine to zero (this script's default) or section 6's x0.96 every 8 epochs ("paper")."""
    if step < warmup:
        return 0.01 + 0.99 * step / warmup
    if schedule == "paper":
        return 0.96 ** ((step - warmup) // (8 * steps_per_epoch))
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def run(name: str, args: argparse.Namespace, train_set, val_set) -> dict:  # type: ignore[no-untyped-def]
    torch.manual_seed(args.seed)
    trained, evaluated = build(name, len(train_set.classes))
    trained = trained.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        generator=generator, persistent_workers=args.workers > 0,
    )  # fmt: skip
    val_loader = DataLoader(val_set, batch_size=100, num_workers=args.workers)
    groups = parameter_groups(
        trained, args.lr, args.wd, bias_weight_decay=args.bias_weight_decay,
        norm_weight_decay=args.norm_weight_decay, bias_lr_mult=args.bias_lr_mult,
    )  # fmt: skip
    optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=args.wd)
    print(
        f"  {name}: SGD weight decay {args.wd}{describe_groups(groups) or ', one parameter group'}",
        flush=True,
    )
    if args.agc:
        clip_unitwise(trained, optimizer, args.agc, classes=len(train_set.classes))
    steps = args.epochs * len(loader)
    warmup = round(args.warmup_epochs * len(loader))

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, args.schedule, warmup, steps, len(loader))
    )
    averaged = AveragedModel(evaluated)
    start = time.perf_counter()
    history = []
    for epoch in range(args.epochs):
        meter, _ = train_one_epoch(
            trained, loader, optimizer, device=torch.device("cpu"), epoch=epoch, scheduler=scheduler,
            channels_last=True, autocast_dtype=torch.bfloat16 if args.bf16 else None,
            clip_grad_norm=args.clip_grad_norm or None, aux_weight=args.aux_weight,
        )  # fmt: skip
        if epoch >= args.epochs // 2:
            averaged.update_parameters(evaluated)
        val = evaluate(evaluated, val_loader, device=torch.device("cpu"))
        summary = meter.summary()
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": summary["loss_main"],
                "train_top1": summary["top1"],
                "val_top1": val["top1"],
            }
        )
        print(
            f"  {name:<12} epoch {epoch + 1:>2}/{args.epochs}: loss {summary['loss_main']:.3f}  val top-1 {val['top1']:.1f}%",
            flush=True,
        )
    seconds = time.perf_counter() - start
    if any(isinstance(m, nn.BatchNorm2d) for m in evaluated.modules()):
        update_bn(loader, averaged)  # recompute the averaged weights' BatchNorm statistics
    val = evaluate(evaluated, val_loader, device=torch.device("cpu"))
    avg = evaluate(averaged.module, val_loader, device=torch.device("cpu"))
    return {
        "model": name,
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "val_top1_averaged": avg["top1"],
        "val_top5_averaged": avg["top5"],
        "train_seconds": seconds,
        "img_s": len(loader) * args.batch_size * args.epochs / seconds,
        "history": history,
    }


def clip_unitwise(model: nn.Module, optimizer: torch.optim.Optimizer, ratio: float, classes: int) -> None:
    """Adaptive gradient clipping (Brock et al. 2021, "High-Performance Large-Scale Image Recognition
    Without Normalization", section 4), applied before every optimiser step: each output unit's gradient
    (a filter's, a row's, a bias's) is scaled down to at most `ratio` times that unit's weight norm
    (at least 1e-3). As there, the classifiers (linear layers with one output per class) are left out.
    Our own few lines: torch has only global-norm clipping (timm has this, but is not a dependency)."""
    left_out = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Linear) and m.out_features == classes
        for p in m.parameters()
    }
    clipped = [p for p in model.parameters() if p.requires_grad and id(p) not in left_out]

    def unit_norm(x: Tensor) -> Tensor:
        return x.abs() if x.ndim <= 1 else x.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))

    @torch.no_grad()
    def clip(*_: object) -> None:
        for p in clipped:
            if p.grad is None:
                continue
            largest = unit_norm(p.detach()).clamp_(min=1e-3).mul_(ratio)
            norm = unit_norm(p.grad).clamp_(min=1e-6)
            p.grad.mul_(torch.where(norm > largest, largest / norm, 1.0))

    optimizer.register_step_pre_hook(clip)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["paper", "bn", "torchvision"],
        help="variants; VARIANT+INIT overrides the init, VARIANT+FIELD=NUMBER a ModelConfig field (e.g. paper+dropout=0.2)",
    )
    parser.add_argument("--epochs", type=positive_int, default=12)
    parser.add_argument("--input-size", type=positive_int, default=64)
    parser.add_argument("-b", "--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--clip-grad-norm", type=float, default=2.0, help="as the built-in preset (0: off)")
    parser.add_argument(
        "--agc", type=float, default=0.0,
        help="adaptive (unit-wise) gradient clipping at this ratio of gradient to weight norm, as NFNets (0: off)",
    )  # fmt: skip
    parser.add_argument("--wd", type=float, default=2e-4)
    parser.add_argument(
        "--bias-weight-decay",
        type=float,
        help="weight decay of biases (default --wd; Caffe's bvlc_googlenet: 0)",
    )
    parser.add_argument(
        "--norm-weight-decay", type=float, help="weight decay of BatchNorm scales (default --wd)"
    )
    parser.add_argument(
        "--bias-lr-mult",
        type=float,
        default=1.0,
        help="learning-rate multiplier of biases (Caffe's bvlc_googlenet: 2)",
    )
    parser.add_argument(
        "--aux-weight", type=float, default=0.3, help="weight of each auxiliary loss (section 5: 0.3)"
    )
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument(
        "--schedule",
        choices=("cosine", "paper"),
        default="cosine",
        help="after the warm-up: cosine to zero (default) or section 6's x0.96 every 8 epochs",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "-j",
        "--workers",
        type=int,
        default=0,
        help="loader processes (0: decode in-process; on 2 cores workers compete with the model)",
    )
    parser.add_argument(
        "--scale-min",
        type=float,
        default=AugmentConfig.scale_min,
        help="smallest crop area of the section-6 sampling (paper: 0.08)",
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default fp32)")
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    for name in args.models:
        if name != "torchvision":
            try:
                variant, overrides = parse_name(name)
                googlenet.build_model(variant, num_classes=10, **overrides)
            except (ValueError, googlenet.ConfigError) as exc:
                parser.error(str(exc))

    augment = AugmentConfig(scale_min=args.scale_min)
    train_set, val_set = load_image_folder(
        args.data_path, build_train_transform(args.input_size, augment), build_eval_transform(args.input_size)
    )
    print(
        f"{args.data_path.name}: {len(train_set)} train / {len(val_set)} val images, {len(train_set.classes)} classes; "
        f"{args.input_size}x{args.input_size}, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr} "
        f"(warm-up {args.warmup_epochs} epoch, {args.schedule}), gradient clipping {args.clip_grad_norm}{f', unit-wise {args.agc}' if args.agc else ''}, "
        f"crop area from {args.scale_min:.0%}, aux weight {args.aux_weight}, seed {args.seed}"
    )
    results = [run(name, args, train_set, val_set) for name in args.models]
    print(f"\n{'model':<12} {'val top-1':>9} {'averaged':>9} {'val top-5':>9} {'img/s':>7} {'time':>7}")
    for r in results:
        print(
            f"{r['model']:<12} {r['val_top1']:>8.1f}% {r['val_top1_averaged']:>8.1f}% {r['val_top5']:>8.1f}% "
            f"{r['img_s']:>7.1f} {r['train_seconds']:>6.0f}s"
        )
    if args.json:
        save_run(args.json, args, results)


if __name__ == "__main__":
    main()
