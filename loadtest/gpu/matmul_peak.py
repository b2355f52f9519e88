"""Achieved dense matmul rate on this machine, the denominator of the benchmark's MFU.

    python loadtest/gpu/matmul_peak.py                 # CUDA: bf16, n = 8192; CPU: float32
    python loadtest/gpu/matmul_peak.py --n 16384 --iters 20

Square n x n x n products (2 n^3 FLOPs each) on random data, after warm-up; on CUDA timed
with CUDA events around `iters` back-to-back products (one synchronize at the end), on CPU
with perf_counter. The best of --repeats timings is reported (and the median). CPU has no
fast bf16 matmul in general, so on CPU the dtype falls back to float32 and the JSON says so.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def measure(
    n: int | None = None,
    iters: int | None = None,
    repeats: int = 5,
    warmup: int = 3,
    device: str | None = None,
    dtype: str = "bfloat16",
) -> dict[str, Any]:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")
    note = None
    if not on_cuda and dtype != "float32":
        note = f"CPU: {dtype} requested, measured float32 instead (no fast low-precision matmul)"
        dtype = "float32"
    n = n or (8192 if on_cuda else 2048)
    iters = iters or (20 if on_cuda else 3)
    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch_dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=torch_dtype, generator=gen)
    out = torch.empty(n, n, device=device, dtype=torch_dtype)
    flops = 2.0 * n**3 * iters
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    times: list[float] = []
    for _ in range(repeats):
        if on_cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                torch.matmul(a, b, out=out)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t = time.perf_counter()
            for _ in range(iters):
                torch.matmul(a, b, out=out)
            times.append(time.perf_counter() - t)
    result: dict[str, Any] = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else cpu_name(),
        "dtype": dtype,
        "n": n,
        "iters_per_timing": iters,
        "repeats": repeats,
        "tflops": round(flops / min(times) / 1e12, 3),  # best timing
        "tflops_median": round(flops / statistics.median(times) / 1e12, 3),
        "torch": torch.__version__,
        "timer": "cuda events" if on_cuda else "perf_counter",
    }
    if not on_cuda:
        result["cpu_threads"] = torch.get_num_threads()
    if note:
        result["note"] = note
    return result


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, help="matrix size (default 8192 on CUDA, 2048 on CPU)")
    p.add_argument("--iters", type=int, help="products per timing (default 20 CUDA, 3 CPU)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--threads", type=int, help="CPU only: torch.set_num_threads")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = measure(args.n, args.iters, args.repeats, args.warmup, args.device, args.dtype)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
