"""What one full-size element-wise pass of the default's Stage-1 step costs on this CPU, eager against
Inductor's generated code (`fit_loe.compile`): a (32, 512, 64) float32 tensor, the activations of one
LoE layer at batch 32 and 512 points.

    python benchmarks/elementwise.py            # median ms of 200 calls each, on torch's threads

Eager `torch.sin` / `torch.cos` are ATen's own kernels; the compiled ones are the vectorised code
Inductor writes (Sleef), and a compiled sin-and-cos pair is one pass over the input.
"""
from __future__ import annotations

import argparse
import time

import torch


def median_ms(fn, calls: int = 200) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    z = torch.randn(32, 512, 64, generator=torch.Generator().manual_seed(0)) * 30   # a SIREN pre-activation's range
    out = torch.empty_like(z)
    eager = {"sin": lambda: torch.sin(z, out=out), "cos": lambda: torch.cos(z, out=out),
             "mul": lambda: torch.mul(z, z, out=out), "copy": lambda: out.copy_(z)}
    compiled = {"sin": torch.compile(torch.sin), "sin and cos": torch.compile(lambda x: (torch.sin(x), torch.cos(x))),
                "mul": torch.compile(lambda x: x * x)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for name, fn in eager.items():
        print(f"eager    {name:12s} {median_ms(fn):.3f} ms")
    for name, fn in compiled.items():
        print(f"compiled {name:12s} {median_ms(lambda: fn(z)):.3f} ms")
    exact = torch.sin(z.double())
    print(f"largest |error| against float64 sin: eager {(torch.sin(z) - exact).abs().max():.2e}, "
          f"compiled {(compiled['sin'](z) - exact).abs().max():.2e}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
