"""Seconds per training step on the CPU (forward, backward, AdamW; batch 32, channels_last), with
oneDNN's depthwise weight gradients and with ``ebsd_core.depthwise``'s, per input size.

Training turns ``ebsd_core.depthwise`` on by itself only on x86 CPUs without AVX-512, where oneDNN
takes its slow GEMM path for those gradients; this measures both on any CPU, so it can tell whether
another CPU would gain from it too. Random weights and patterns (the cost does not depend on them).

``--device cuda`` measures a GPU instead: the step in float32 and under bf16 autocast (training autocasts only
from ``GPU_BF16_MIN_INPUT`` pixels on), and a batch's augmentation on the CPU and on the GPU (training augments on
the GPU).
"""

from __future__ import annotations

import contextlib
import functools
import time

import torch
import torch.nn.functional as F
from _common import emit, parser

from ebsd_core.augment import AugmentConfig, augment_batch
from ebsd_core.backbones import create_model
from ebsd_core.depthwise import fast_depthwise_grads, slow_depthwise_weight_grad
from ebsd_core.inference import inference_autocast


def training_step(backbone: str, size: int, device: torch.device, batch: int = 32):
    """A model, a random batch and a function that takes one training step on it (forward, backward, AdamW,
    channels_last) in ``"fp32"`` or under ``"bf16"`` autocast."""
    torch.manual_seed(0)
    model = create_model(backbone, 6, pretrained=False).to(device, memory_format=torch.channels_last).train()
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step(precision: str = "fp32") -> None:
        with inference_autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, x, step


def seconds_per_step(backbone: str, size: int, depthwise: bool, steps: int, batch: int = 32) -> float:
    cpu = torch.device("cpu")
    model, _, step = training_step(backbone, size, cpu, batch)
    swap = fast_depthwise_grads(model, cpu, enabled=True) if depthwise else contextlib.nullcontext()
    times = []
    with swap:
        for _ in range(steps + 2):  # the first two warm oneDNN's primitive cache
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return sum(times[2:]) / steps


def cuda_seconds(function, steps: int) -> float:
    """Mean seconds of ``function`` on the GPU after two warm-up calls, synchronised."""
    for _ in range(2):
        function()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        function()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def cuda_row(backbone: str, size: int, steps: int, batch: int = 32) -> dict:
    """Milliseconds of a training step in float32 and in bf16 autocast, and of a batch's augmentation on the
    CPU and on the GPU."""
    cuda = torch.device("cuda")
    _, x, step = training_step(backbone, size, cuda, batch)
    row = {"input": size}
    for precision in ("fp32", "bf16"):
        row[f"step_{precision}_ms"] = round(1000 * cuda_seconds(functools.partial(step, precision), steps), 2)
    on_cpu, generator = x.cpu().contiguous(), torch.Generator().manual_seed(0)
    for _ in range(3):  # warm: oneDNN's first calls of a shape are many times slower
        augment_batch(on_cpu, AugmentConfig(), generator)
    start = time.perf_counter()
    for _ in range(steps):
        augment_batch(on_cpu, AugmentConfig(), generator)
    row["augment_cpu_ms"] = round(1000 * (time.perf_counter() - start) / steps, 2)
    on_gpu = torch.Generator(device=cuda).manual_seed(0)
    row["augment_gpu_ms"] = round(1000 * cuda_seconds(lambda: augment_batch(x, AugmentConfig(), on_gpu), steps), 2)
    return row


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--sizes", default="32,64,128,224", help="input sizes, comma-separated")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the CPU (default) or a CUDA GPU")
    args = p.parse_args()
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    steps = 3 if args.quick else args.steps
    if args.device == "cuda":
        rows = [cuda_row(args.backbone, size, 10 * steps) for size in sizes]
        emit({"backbone": args.backbone, "batch": 32, "gpu": torch.cuda.get_device_name(0), "steps": rows})
        return
    rows = []
    for size in sizes:
        onednn = seconds_per_step(args.backbone, size, False, steps)
        ours = seconds_per_step(args.backbone, size, True, steps)
        speed_up = round(onednn / ours, 2)
        rows.append({"input": size, "onednn_s": round(onednn, 3), "depthwise_s": round(ours, 3), "speed_up": speed_up})
        print(rows[-1], flush=True)
    emit({"backbone": args.backbone, "batch": 32, "used_in_training": slow_depthwise_weight_grad(), "steps": rows})


if __name__ == "__main__":
    main()
