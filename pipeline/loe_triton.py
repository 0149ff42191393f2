"""Fused Triton kernels for the LoE layer (`fit_loe.kernel: triton`).

One batched matmul kernel, C[b] = A[b] @ B[b] (+ bias[b]), whose epilogue does
the element-wise work while the tile is still in registers:

- `linear_sincos(y, w, b)`: a hidden layer's forward, z = y w^T + b, writing
  sin z (the next layer's input) and cos z (what the hand-written inner
  gradient and the backward need) in one pass; eager PyTorch writes z, then
  reads it twice for sin and cos.
- `matmul_mul(g, w, c)`: the inner gradient through a layer, (g w) * cos z of
  the layer below, the product taken in the epilogue instead of a second pass
  over the (B, P, C) tensor.

Both are autograd Functions: the outer (second-order) backward of the
meta-learning step goes through them; their backward passes reuse the
epilogue kernel for (g w) * G and leave the plain matmuls to cuBLAS, which no
hand-written kernel beats on a plain matmul. Shapes follow `loe.py`: y (B, P,
in), w (B, out, in), b (B, out).

Numbers: fp32 accumulation; inputs in fp32 (or TF32 on a GPU when
`fit_loe.precision` is tf32). Tested on the CPU under Triton's interpreter
(`TRITON_INTERPRET=1`) against the eager path (tests/test_loe_triton.py).

Off by default, because measured slower: on one H200 the CelebA preset's step
takes 49.8 ms fused against 45.2 ms eager at fp32, 36.2 against 34.4 ms at
TF32, and 20.7 ms compiled (`fit_loe.compile`); fp32 fused trains the same
curve as eager to every logged digit, TF32 fused loses 0.4 dB of test PSNR in
1000 steps (benchmarks/README.md, benchmarks/results/h200/fused).
"""
import functools
import os

import torch

KERNELS = ("torch", "triton")          # fit_loe.kernel
BLOCK_M, BLOCK_N, BLOCK_K = 32, 32, 16
LINEAR, SIN_COS, MUL = 0, 1, 2         # the epilogues


def use(model, kernel: str, device: torch.device) -> None:
    """Set the model's kernel (`fit_loe.kernel`); triton where it cannot run is one line naming the key."""
    if kernel == "triton" and (why := unavailable(device)):
        from .config import ConfigError

        raise ConfigError(f"fit_loe.kernel: {why}")
    model.kernel = kernel


def unavailable(device: torch.device) -> str | None:
    """Why the kernels cannot run on `device` (None: they can)."""
    if triton is None:
        return "Triton is not installed (`pip install triton`)"
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"Triton kernels need a CUDA device (this run's is {device.type}; TRITON_INTERPRET=1 runs them on " \
               "the CPU, slowly, for checks)"
    return None


try:                                   # optional: only `fit_loe.kernel: triton` needs it
    import triton
    import triton.language as tl
except ImportError:                    # `unavailable` says so before anything runs
    triton = tl = None


if triton is not None:
    def _mm(a_ptr, b_ptr, bias_ptr, e_ptr, c1_ptr, c2_ptr, M, N, K,
            sa_b, sa_m, sa_k, sb_b, sb_k, sb_n, sbias_b, sc_b, sc_m, sc_n,
            EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
            BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        """C[b] tile (BM, BN) = A[b] @ B[b] (+ bias[b]), then the epilogue; jitted by `_kernel`."""
        bat, pm, pn = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rm = pm * BM + tl.arange(0, BM)
        rn = pn * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        acc = tl.full((BM, BN), 0.0, tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + rk
            a = tl.load(a_ptr + bat * sa_b + rm[:, None] * sa_m + kk[None, :] * sa_k,
                        mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
            b = tl.load(b_ptr + bat * sb_b + kk[:, None] * sb_k + rn[None, :] * sb_n,
                        mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
            acc += tl.dot(a, b, input_precision=PRECISION)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + bat * sbias_b + rn, mask=rn < N, other=0.0)[None, :]
        out = bat * sc_b + rm[:, None] * sc_m + rn[None, :] * sc_n
        mask = (rm[:, None] < M) & (rn[None, :] < N)
        if EPILOGUE == 1:                                  # sin and cos of the tile, one pass
            tl.store(c1_ptr + out, tl.sin(acc), mask=mask)
            tl.store(c2_ptr + out, tl.cos(acc), mask=mask)
        elif EPILOGUE == 2:                                # times E, element by element
            tl.store(c1_ptr + out, acc * tl.load(e_ptr + out, mask=mask, other=0.0), mask=mask)
        else:
            tl.store(c1_ptr + out, acc, mask=mask)


# Tile shapes Triton's autotuner times on a GPU, once per (M, N, K, epilogue) on first use: the CelebA
# preset's layers are (32, 4096, 128) x (128, 128), ShapeNet's (., ., 256) x (256, 256), and the first layer
# reads 2 or 3 coordinates (K <= 3: the K tile only masks). Under the interpreter (a CPU check) one small
# tile, BLOCK_M x BLOCK_N x BLOCK_K, runs instead: the interpreter has no timer and the numbers do not
# depend on the tile.
GPU_TILES = ((128, 128, 32, 8, 3), (128, 128, 64, 8, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4),
             (64, 64, 32, 4, 4), (256, 128, 32, 8, 3), (128, 256, 32, 8, 3), (32, 32, 16, 4, 2))


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.lru_cache(maxsize=1)
def _kernel():
    """`_mm` jitted on first use, so that TRITON_INTERPRET is read when a run uses it, not at import;
    autotuned over GPU_TILES on a GPU."""
    jitted = triton.jit(_mm)
    if interpreted():
        return jitted
    configs = [triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=w, num_stages=s)
               for bm, bn, bk, w, s in GPU_TILES]
    return triton.autotune(configs, key=["M", "N", "K", "EPILOGUE", "HAS_BIAS", "PRECISION"])(jitted)


def _launch(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, e: torch.Tensor | None,
            epilogue: int) -> tuple[torch.Tensor, ...]:
    """a (B, M, K) @ b (B, K, N), any strides (a batch stride of 0 broadcasts), + bias (B, N), then the
    epilogue: (C,) for LINEAR and MUL (times e, (B, M, N)), (sin C, cos C) for SIN_COS."""
    mm = _kernel()
    batch, m, k = a.shape
    n = b.shape[2]
    a, b = a.float(), b.float()
    c1 = torch.empty(batch, m, n, device=a.device, dtype=torch.float32)
    c2 = torch.empty_like(c1) if epilogue == SIN_COS else c1
    e = e.float().contiguous() if e is not None else c1
    bias_t = bias.float().contiguous() if bias is not None else c1
    precision = "tf32" if a.is_cuda and torch.backends.cuda.matmul.allow_tf32 else "ieee"
    tiles = {"BM": BLOCK_M, "BN": BLOCK_N, "BK": BLOCK_K} if interpreted() else {}   # else the autotuner's

    def grid(meta):
        return batch, triton.cdiv(m, meta["BM"]), triton.cdiv(n, meta["BN"])

    mm[grid](a, b, bias_t, e, c1, c2, m, n, k, a.stride(0), a.stride(1), a.stride(2),
             b.stride(0), b.stride(1), b.stride(2), bias_t.stride(0) if bias is not None else 0,
             c1.stride(0), c1.stride(1), c1.stride(2), EPILOGUE=epilogue, HAS_BIAS=bias is not None,
             PRECISION=precision, **tiles)
    return (c1, c2) if epilogue == SIN_COS else (c1,)


class LinearSinCos(torch.autograd.Function):
    """(sin z, cos z) of z = y w^T + b: y (B, P, in), w (B, out, in), b (B, out)."""

    @staticmethod
    def forward(ctx, y, w, b):
        s, c = _launch(y, w.transpose(1, 2), b, None, SIN_COS)
        ctx.save_for_backward(y, w, s, c)
        return s, c

    @staticmethod
    def backward(ctx, g_sin, g_cos):
        y, w, s, c = ctx.saved_tensors
        gz = 0
        if g_sin is not None:
            gz = g_sin * c
        if g_cos is not None:
            gz = gz - g_cos * s
        gy = torch.bmm(gz, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(gz.transpose(1, 2), y.expand(gz.shape[0], *y.shape[1:])) if ctx.needs_input_grad[1] else None
        gb = gz.sum(1) if ctx.needs_input_grad[2] else None
        return gy, gw, gb


class MatmulMul(torch.autograd.Function):
    """(g w) * e: g (B, P, out), w (B, out, in), e (B, P, in)."""

    @staticmethod
    def forward(ctx, g, w, e):
        ctx.save_for_backward(g, w, e)
        return _launch(g, w, None, e, MUL)[0]

    @staticmethod
    def backward(ctx, grad):
        g, w, e = ctx.saved_tensors
        ge = grad * e
        dg = torch.bmm(ge, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        dw = torch.bmm(g.transpose(1, 2), ge) if ctx.needs_input_grad[1] else None
        de = _launch(g, w, None, grad, MUL)[0] if ctx.needs_input_grad[2] else None    # (g w) * grad
        return dg, dw, de


def linear_sincos(y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return LinearSinCos.apply(y, w, b)


def matmul_mul(g: torch.Tensor, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return MatmulMul.apply(g, w, e)
