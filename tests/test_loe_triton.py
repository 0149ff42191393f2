"""The fused Triton kernels of the LoE layer (`fit_loe.kernel: triton`) on the CPU, under Triton's
interpreter: forward, the hand-written inner gradient and the outer gradient through 3 inner steps equal the
eager path to float32 rounding, for fp32 inputs and for inputs rounded to TF32, for every variant. The kernel
multiplies in IEEE fp32 here; its TF32 dot (a CUDA tensor with allow_tf32) runs only on a GPU, where
benchmarks/fused_check.py measures it against the eager TF32 path.

Tolerance: the largest difference at most 2e-5 of the largest value. The kernels sum in another order than the
eager matmuls; measured, the largest difference is 1.7e-6 of the largest value over every case here (forward,
inner gradient, outer gradients of every parameter), so the bound has a 10x margin."""
import os

import pytest
import torch

from pipeline.loe import LayersOfExperts
from pipeline.meta import MetaSGD, inner_loop, per_instance_mse

pytest.importorskip("triton")
from pipeline import loe_triton  # noqa: E402

TOLERANCE = 2e-5


@pytest.fixture(autouse=True, scope="module")
def interpreter():
    """Triton's interpreter for this module alone (read when the kernel is built: loe_triton._kernel), and the
    interpreted kernel dropped after it, so that a GPU test later in the same process builds a compiled one."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    loe_triton._kernel.cache_clear()
    yield
    loe_triton._kernel.cache_clear()
    if before is None:
        os.environ.pop("TRITON_INTERPRET")
    else:
        os.environ["TRITON_INTERPRET"] = before


def tf32(x: torch.Tensor) -> torch.Tensor:
    """x rounded to TF32 (10 mantissa bits, round to nearest even), as a TF32 matmul reads its inputs."""
    bits = x.float().contiguous().view(torch.int32)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF
    return bits.view(torch.float32)


def setup(variant, rounded, seed=0):
    torch.manual_seed(seed)
    model = LayersOfExperts(2, 3, 3, 4, 16, 4, 30.0, variant)
    coords = torch.rand(2, 20, 2) * 2 - 1                 # 20 points: not a multiple of the 32-row tiles
    latents = torch.randn(2, 3, 4) * 0.1
    targets = torch.rand(2, 20, 3) * 2 - 1
    if rounded:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(tf32(p))
        coords, latents, targets = tf32(coords), tf32(latents), tf32(targets)
    return model, coords, latents, targets


def both(model, fn):
    model.kernel = "torch"
    eager = fn()
    model.kernel = "triton"
    fused = fn()
    model.kernel = "torch"
    return eager, fused


def close(a, b):
    return (a - b).abs().max() <= TOLERANCE * a.abs().max()


@pytest.mark.parametrize("variant", ["chinr", "mnif", "functa"])
@pytest.mark.parametrize("rounded", [False, True], ids=["fp32", "tf32-inputs"])
def test_forward_and_inner_gradient_equal_the_eager_path(variant, rounded):
    model, coords, latents, targets = setup(variant, rounded)
    eager, fused = both(model, lambda: model(coords, latents).detach())
    assert close(eager, fused)
    eager, fused = both(model, lambda: model.latent_grad(coords, latents, targets).detach())
    assert close(eager, fused) and eager.abs().max() > 0


@pytest.mark.parametrize("variant", ["chinr", "mnif", "functa"])
@pytest.mark.parametrize("rounded", [False, True], ids=["fp32", "tf32-inputs"])
def test_the_outer_gradient_through_three_inner_steps_equals_the_eager_path(variant, rounded):
    model, coords, latents, targets = setup(variant, rounded)
    rates = MetaSGD(3, 4, 0.005, 0.1)

    def outer():
        model.zero_grad()
        rates.zero_grad()
        h = inner_loop(model, rates(), coords, targets, latents, 3, 1.0, create_graph=True)
        per_instance_mse(model(coords, h), targets).mean().backward()
        return [p.grad.clone() for p in (*model.parameters(), *rates.parameters())]

    eager, fused = both(model, outer)
    assert len(eager) == len(fused) and all(close(e, f) for e, f in zip(eager, fused))
    assert sum(e.abs().sum() for e in eager) > 0


def test_the_epilogues_on_their_own():
    torch.manual_seed(1)
    y, w, b = torch.randn(3, 37, 5), torch.randn(3, 7, 5), torch.randn(3, 7)
    s, c = loe_triton.linear_sincos(y, w, b)
    z = torch.baddbmm(b[:, None], y, w.transpose(1, 2))
    assert torch.allclose(s, torch.sin(z), atol=1e-5) and torch.allclose(c, torch.cos(z), atol=1e-5)
    g, e = torch.randn(3, 37, 7), torch.randn(3, 37, 5)
    assert torch.allclose(loe_triton.matmul_mul(g, w, e), torch.bmm(g, w) * e, atol=1e-5)
    # broadcast coordinates (a batch stride of 0), as the first layer reads them
    shared = torch.randn(37, 5).expand(3, 37, 5)
    assert torch.allclose(loe_triton.linear_sincos(shared, w, b)[0],
                          torch.sin(torch.baddbmm(b[:, None], shared, w.transpose(1, 2))), atol=1e-5)


def test_unavailable_says_why_in_one_line(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    why = loe_triton.unavailable(torch.device("cpu"))
    assert why.startswith("Triton kernels need a CUDA device") and "\n" not in why
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert loe_triton.unavailable(torch.device("cpu")) is None


def test_fit_loe_kernel_triton_where_it_cannot_run_is_one_line_naming_the_key(monkeypatch):
    from pipeline import config

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    model = LayersOfExperts(2, 3, 3, 4, 16, 4, 30.0)
    with pytest.raises(config.ConfigError, match=r"^fit_loe\.kernel: Triton kernels need a CUDA device"):
        loe_triton.use(model, "triton", torch.device("cpu"))
    assert model.kernel == "torch"
    loe_triton.use(model, "torch", torch.device("cpu"))
    for extra, says in (({"compile": True}, "set fit_loe.compile false"), ({"precision": "bf16"}, "fp32 or tf32")):
        with pytest.raises(config.ConfigError, match=rf"^fit_loe\.kernel: .*{says}"):
            config.from_dict({"fit_loe": {"kernel": "triton", **extra}})
    assert config.from_dict({"fit_loe": {"kernel": "triton"}}).fit_loe.kernel == "triton"
