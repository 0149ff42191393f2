import shutil

import numpy as np
import pytest
import torch

from pipeline import config
from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline.loe import LayersOfExperts
from pipeline.meta import MetaLearner, MetaSGD, fit_latents, inner_loop, per_instance_mse
from pipeline.modalities.image.modality import ImageModality
from pipeline.training import Checkpointer, StepLog

IMAGES, _ = synthetic_faces.generate(24, 16, seed=1)
MOD = ImageModality(16)


def small_model():
    torch.manual_seed(0)
    return LayersOfExperts(2, 3, layers=3, experts=4, width=16, latent_dim=6, w0=30.0), MetaSGD(3, 6, 0.005, 0.1)


def test_inner_loop_lowers_every_instance_loss():
    model, meta_sgd = small_model()
    targets, coords = MOD.targets(IMAGES[:8]), MOD.coordinates()
    h0 = torch.zeros(8, 3, 6)
    before = per_instance_mse(model(coords, h0), targets)
    h = inner_loop(model, torch.ones(3, 6), coords, targets, h0.clone(), steps=3, lr=0.05, create_graph=False)
    after = per_instance_mse(model(coords, h), targets)
    assert (after < before).all(), (before, after)


def test_inner_step_does_not_depend_on_batch_size():
    # Per-instance inner loss: an instance fitted alone or in a batch of 8 gets the same latent.
    model, meta_sgd = small_model()
    targets, coords = MOD.targets(IMAGES[:8]), MOD.coordinates()
    rates = meta_sgd().detach()
    together = inner_loop(model, rates, coords, targets, torch.zeros(8, 3, 6), 3, 1.0, False)
    alone = inner_loop(model, rates, coords, targets[2:3], torch.zeros(1, 3, 6), 3, 1.0, False)
    assert torch.allclose(together[2], alone[0], atol=1e-6)


def test_meta_sgd_rates_learn_in_first_and_second_order_and_only_second_order_differentiates_the_gradients():
    """As mNIF: first order treats the inner gradients as constants, but h = init - lr * rates * grad still
    depends on the rates, so they get a gradient; the two orders give the rates and the weights different
    gradients (second order adds the path through each inner gradient)."""
    grads = {}
    for first_order in (False, True):
        model, meta_sgd = small_model()
        learner = MetaLearner(model, meta_sgd, MOD, config.FitLoE(first_order=first_order))
        learner.step_loss(MOD.coordinates(), MOD.targets(IMAGES[:4]), torch.Generator().manual_seed(0)).mean().backward()
        assert meta_sgd.rates.grad is not None and meta_sgd.rates.grad.abs().sum() > 0
        grads[first_order] = (meta_sgd.rates.grad.clone(), torch.cat([p.grad.flatten() for p in model.parameters()
                                                                      if p.grad is not None]))
    for second, first in zip(grads[False], grads[True]):     # apart by far more than float32 rounding
        assert (second - first).abs().max() > 1e-5 * second.abs().max()


def _fit(tmp_path, steps, name, ckpt_every=100):
    model, meta_sgd = small_model()
    cfg = config.FitLoE(steps=steps, batch_size=4, checkpoint_every=ckpt_every, log_every=2, warmup_steps=2)
    log = StepLog(tmp_path / f"{name}.csv")
    ck = Checkpointer(tmp_path / f"{name}.pt", "run", cfg.checkpoint_every)
    MetaLearner(model, meta_sgd, MOD, cfg).fit(IMAGES, ck, log, torch.Generator().manual_seed(0), progress=False)
    return model, log


class Interrupt(Exception):
    pass


def test_meta_learning_improves_and_an_interrupted_run_resumes_exactly(tmp_path):
    full, log = _fit(tmp_path, 12, "full")
    assert log.rows[-1]["loss"] < log.rows[0]["loss"]

    # Interrupt after the checkpoint at step 6, then rerun: the result must be identical.
    model, meta_sgd = small_model()
    cfg = config.FitLoE(steps=12, batch_size=4, checkpoint_every=6, log_every=2, warmup_steps=2)
    ck = Checkpointer(tmp_path / "cut.pt", "run", 6)
    saved = ck.save

    def save_then_die(state, final=False):
        saved(state, final)
        raise Interrupt

    ck.save = save_then_die
    try:
        MetaLearner(model, meta_sgd, MOD, cfg).fit(IMAGES, ck, StepLog(tmp_path / "cut.csv"),
                                                   torch.Generator().manual_seed(0), progress=False)
    except Interrupt:
        pass
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["step"] == 6
    resumed, log2 = _fit(tmp_path, 12, "cut", ckpt_every=6)
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert [r["step"] for r in log2.rows] == [r["step"] for r in log.rows]
    # The finished checkpoints byte for byte (what dvc.lock records): the resumed run's optimizer state and
    # log rows carry keys unpickled from the cut checkpoint, which pickle wrote again (64 bytes more) until
    # the keys were interned on load.
    assert (tmp_path / "cut.pt").read_bytes() == (tmp_path / "full.pt").read_bytes()


def test_checkpoint_of_other_params_is_ignored(tmp_path):
    _fit(tmp_path, 4, "a")
    ck = Checkpointer(tmp_path / "a.pt", "another-run", 100)
    assert ck.load() is None


def test_fit_latents_reports_per_instance_metrics():
    model, meta_sgd = small_model()
    latents, m = fit_latents(model, meta_sgd, MOD, IMAGES[:10], steps=2, lr=1.0, batch_size=4, progress=False)
    assert latents.shape == (10, 3, 6)
    assert m["psnr"].shape == (10,) and m["ssim"].shape == (10,)
    assert np.isfinite(m["psnr"]).all()


def _autograd_inner_loop(model, rates, coords, targets, h, steps, lr, first_order=False):
    """The reference: the inner loop by torch.autograd.grad, second order (first order: each inner gradient
    a constant, the update still a function of the rates)."""
    for _ in range(steps):
        if first_order:
            leaf = h.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(per_instance_mse(model(coords, leaf), targets).sum(), leaf)
        else:
            (grad,) = torch.autograd.grad(per_instance_mse(model(coords, h), targets).sum(), h, create_graph=True)
        h = h - lr * rates * grad
    return h


def test_hand_written_latent_gradient_equals_autograd_at_each_instances_own_coordinates():
    """(B, P, 2) coordinates, one set per instance (shared ones: test_loe, every variant)."""
    torch.manual_seed(0)
    model = LayersOfExperts(2, 3, layers=4, experts=5, width=16, latent_dim=6, w0=30.0).double()
    targets = torch.rand(3, 50, 3, dtype=torch.double)
    h = torch.randn(3, 4, 6, dtype=torch.double, requires_grad=True)
    coords = torch.rand(3, 50, 2, dtype=torch.double) * 2 - 1
    (expect,) = torch.autograd.grad(per_instance_mse(model(coords, h), targets).sum(), h)
    got = model.latent_grad(coords, h, targets)
    assert got.shape == (3, 4, 6)
    assert (got - expect).abs().max() <= 1e-12 * expect.abs().max()


def test_outer_gradient_through_the_hand_written_inner_loop_equals_autograd_in_both_orders():
    model, meta_sgd = small_model()
    model, meta_sgd = model.double(), meta_sgd.double()
    coords, targets = MOD.coordinates().double(), MOD.targets(IMAGES[:4]).double()
    h0 = torch.randn(4, 3, 6, dtype=torch.double) * 1e-2
    params = list(model.parameters()) + list(meta_sgd.parameters())

    def outer(h):
        return per_instance_mse(model(coords, h), targets).sum()

    for first_order in (False, True):
        expect = torch.autograd.grad(outer(_autograd_inner_loop(model, meta_sgd(), coords, targets,
                                                                 h0.clone().requires_grad_(True), 3, 1.0,
                                                                 first_order)), params)
        got = torch.autograd.grad(outer(inner_loop(model, meta_sgd(), coords, targets, h0, 3, 1.0,
                                                   not first_order)), params)
        for g, e in zip(got, expect):
            assert (g - e).abs().max() <= 1e-9 * e.abs().max() + 1e-15
        assert expect[-1].abs().max() > 0        # the Meta-SGD rates get a gradient in both orders


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_step_gives_the_eager_step_loss_and_gradients():
    # fit_loe.compile traces the whole step with fullgraph=True (a graph break is an error).
    model, meta_sgd = small_model()
    coords, targets = MOD.coordinates(), MOD.targets(IMAGES[:4])
    out = {}
    for compiled in (False, True):
        learner = MetaLearner(model, meta_sgd, MOD, config.FitLoE(compile=compiled))
        model.zero_grad(), meta_sgd.zero_grad()
        loss = learner.step_loss(coords, targets, torch.Generator().manual_seed(0))
        loss.mean().backward()
        out[compiled] = (loss.detach(), [p.grad.clone() for p in (*model.parameters(), *meta_sgd.parameters())])
    assert torch.allclose(out[True][0], out[False][0], rtol=1e-4, atol=1e-7)
    for a, b in zip(out[True][1], out[False][1]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6 * b.abs().max().item())


def test_the_compiled_cpu_step_recomputes_no_sin_or_cos_in_its_backward():
    """On a CPU the compiled step saves what the backward reads: its backward graph evaluates only the cos
    that the outer loss's own sines need (one per hidden layer, as eager's SinBackward does), where the
    compiler's default partition recomputes the inner loop's sin and cos there."""
    from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd

    model, meta_sgd = small_model()
    coords, targets = MOD.coordinates(), MOD.targets(IMAGES[:4])
    learner = MetaLearner(model, meta_sgd, MOD, config.FitLoE(compile=False))
    trig = {}
    for name, fn in (("saving", learner._outer_loss_saving_all), ("default", learner.outer_loss)):
        graphs = []

        def backward(gm, _):
            graphs.append(gm)
            return make_boxed_func(gm.forward)

        torch._dynamo.reset()
        backend = aot_autograd(fw_compiler=lambda gm, _: make_boxed_func(gm.forward), bw_compiler=backward,
                               partition_fn=min_cut_rematerialization_partition)
        loss = torch.compile(fn, backend=backend, fullgraph=True)(coords, targets, torch.zeros(4, 3, 6))
        loss.mean().backward()
        trig[name] = sum(n.target in (torch.ops.aten.sin.default, torch.ops.aten.cos.default)
                         for n in graphs[0].graph.nodes)
    assert trig["saving"] == model.layers - 1
    assert trig["default"] > trig["saving"]


def test_bf16_stage_1_step_runs_in_bf16_on_a_cpu_and_stays_near_fp32():
    """fit_loe.precision bf16 autocasts the step's forward on a CPU too: a different loss (bf16 rounding
    was applied) within 2% of fp32's on the same batch."""
    from pipeline.meta import autocast_context

    cfg = config.FitLoE(batch_size=8)
    losses = {}
    for precision in ("fp32", "bf16"):
        model, meta_sgd = small_model()
        learner = MetaLearner(model, meta_sgd, MOD, cfg)
        targets, coords = MOD.targets(IMAGES[:8]), MOD.coordinates()
        with autocast_context(precision, torch.device("cpu")):
            losses[precision] = learner.step_loss(coords, targets, torch.Generator().manual_seed(0)).float().mean().item()
    assert losses["bf16"] != losses["fp32"]
    assert abs(losses["bf16"] - losses["fp32"]) < 0.02 * losses["fp32"]


def test_fit_loe_bf16_on_a_cpu_without_native_bf16_trains_fp32_and_says_so(micro_trained, tmp_path, monkeypatch):
    """Emulated bf16 is slower than fp32, so the stage falls back: the same weights as an fp32 run, and the
    warning in its metrics."""
    import json

    import yaml

    from conftest import copy_of
    from pipeline.stages import fit_loe, seeded

    finals = {}
    for precision, native in (("fp32", True), ("bf16", False)):
        work = copy_of(micro_trained, tmp_path / precision)
        (work / "data" / "fit_loe" / "checkpoint.pt").unlink()
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["fit_loe"]["precision"] = precision
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        monkeypatch.chdir(work)
        monkeypatch.setattr("pipeline.training.native_bf16", lambda native=native: native)
        fit_loe.main(config.load(work / "params.yaml"), seeded(0), 0.0, torch.device("cpu"))
        finals[precision] = json.loads((work / "metrics" / "detail" / "fit_loe.json").read_text())
    assert finals["bf16"]["final_loss"] == finals["fp32"]["final_loss"]
    assert "warnings" not in finals["fp32"]
    assert finals["bf16"]["warnings"] == [
        "fit_loe.precision bf16 asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX): training in fp32 "
        "instead (set fit_loe.precision fp32 to silence this)"]


def test_a_cpu_capped_below_avx512_counts_as_having_no_native_bf16(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 or ONEDNN_MAX_CPU_ISA=AVX2 make an AVX-512 machine compute as one without it
    (docs/operations.md): bf16 is then emulated, so Stage-1 and the HCDM train fp32 there, as on that machine."""
    from pipeline import training

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    uncapped = training.native_bf16()
    assert uncapped == bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert training.native_bf16() is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert training.native_bf16() == uncapped
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert training.native_bf16() is False
