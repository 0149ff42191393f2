import pytest
import torch

from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline.loe import LayersOfExperts
from pipeline.meta import mse_to_psnr, per_instance_mse
from pipeline.modalities.image.modality import ImageModality


def test_shapes_and_per_instance_latents():
    m = LayersOfExperts(d_in=2, d_out=3, layers=4, experts=5, width=16, latent_dim=6, w0=30.0)
    coords = torch.rand(50, 2) * 2 - 1
    h = torch.randn(7, 4, 6) * 0.1
    out = m(coords, h)
    assert out.shape == (7, 50, 3)
    # Each instance depends on its own latent only.
    h2 = h.clone()
    h2[3] += 1.0
    out2 = m(coords, h2)
    assert torch.equal(out[:3], out2[:3]) and not torch.allclose(out[3], out2[3])
    with pytest.raises(ValueError, match=r"latents must be \(B, 4, 6\)"):
        m(coords, torch.zeros(2, 3, 6))


def test_mixture_at_zero_latent_keeps_siren_statistics():
    # The gate bias 1/sqrt(K) makes the mixed hidden weights as wide as one expert.
    m = LayersOfExperts(2, 3, layers=3, experts=64, width=128, latent_dim=8, w0=30.0)
    alpha = m.gating(torch.zeros(1, 3, 8))[1]                       # (1, K)
    mixed = torch.einsum("bk,koi->boi", alpha, m.weights[1])
    bound = (6 / 128) ** 0.5 / 30                                   # SIREN hidden-layer bound
    assert mixed.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)


def test_overfits_one_image_above_30db():
    """One 32x32 face, weights and latent trained jointly: > 30 dB in 400 Adam steps."""
    images, _ = synthetic_faces.generate(1, 32, seed=3)
    mod = ImageModality(32)
    target, coords = mod.targets(images), mod.coordinates()
    model = LayersOfExperts(2, 3, layers=4, experts=4, width=64, latent_dim=8, w0=30.0)
    h = torch.zeros(1, 4, 8, requires_grad=True)
    opt = torch.optim.Adam(list(model.parameters()) + [h], lr=1e-3)
    for _ in range(400):
        loss = per_instance_mse(model(coords, h), target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    psnr = mse_to_psnr(per_instance_mse(model(coords, h), target)).item()
    assert psnr > 30.0, psnr


def test_functa_with_a_zero_latent_is_the_base_siren():
    torch.manual_seed(0)
    m = LayersOfExperts(2, 3, layers=4, experts=7, width=16, latent_dim=6, w0=30.0, variant="functa").double()
    assert m.experts == 1 and len(m.gates) == 0 and len(m.shifts) == 3
    coords = torch.rand(40, 2, dtype=torch.double) * 2 - 1
    y = coords
    for l in range(4):                        # sin(w0 (W y + b)) on the hidden layers, linear last
        z = y @ m.weights[l][0].T + m.biases[l][0]
        y = torch.sin(30.0 * z) if l < 3 else z
    out = m(coords, torch.zeros(2, 4, 6, dtype=torch.double))
    assert torch.allclose(out, y.expand(2, -1, -1), rtol=0, atol=1e-12)
    # A latent shifts the hidden pre-activations by w0 (M^l h + m^l) and leaves the weights alone.
    h = torch.randn(2, 4, 6, dtype=torch.double)
    y = coords.expand(2, -1, -1)
    for l in range(4):
        z = y @ m.weights[l][0].T + m.biases[l][0] + (m.shifts[l](h.flatten(1))[:, None] if l < 3 else 0)
        y = torch.sin(30.0 * z) if l < 3 else z
    assert torch.allclose(m(coords, h), y, rtol=0, atol=1e-10)


def test_mnif_mixes_every_layer_from_the_whole_latent_and_chinr_from_its_own():
    torch.manual_seed(0)
    h = torch.randn(3, 4, 6)
    later = h.clone()
    later[:, 3] += 1.0                          # only the last layer's part of the latent changes
    for variant, first_layer_moves in (("chinr", False), ("mnif", True)):
        m = LayersOfExperts(2, 3, layers=4, experts=5, width=16, latent_dim=6, w0=30.0, variant=variant)
        assert m.per_layer_latents == (variant == "chinr")
        a, b = m.gating(h)[0], m.gating(later)[0]
        assert a.shape == (3, 5) and (not torch.equal(a, b)) == first_layer_moves
        assert not torch.equal(m.gating(h)[3], m.gating(later)[3])
    mnif = LayersOfExperts(2, 3, layers=4, experts=5, width=16, latent_dim=6, w0=30.0, variant="mnif")
    assert all(g.weight.shape == (5, 24) for g in mnif.gates)      # (K, L*H): one linear map of the latent


@pytest.mark.parametrize("variant", ["chinr", "mnif", "functa"])
def test_every_variant_has_the_hand_written_latent_gradient(variant):
    torch.manual_seed(0)
    model = LayersOfExperts(2, 3, layers=4, experts=5, width=16, latent_dim=6, w0=30.0, variant=variant).double()
    targets = torch.rand(3, 50, 3, dtype=torch.double)
    h = torch.randn(3, 4, 6, dtype=torch.double, requires_grad=True)
    coords = torch.rand(50, 2, dtype=torch.double) * 2 - 1
    (expect,) = torch.autograd.grad(per_instance_mse(model(coords, h), targets).sum(), h)
    got = model.latent_grad(coords, h, targets)
    assert got.shape == (3, 4, 6) and expect.abs().max() > 0
    assert (got - expect).abs().max() <= 1e-12 * expect.abs().max()
    # The outer (second-order) gradient through it reaches every parameter group.
    params = [p for p in model.parameters()]
    loss = per_instance_mse(model(coords, h.detach() - 0.1 * model.latent_grad(coords, h.detach(), targets)),
                            targets).sum()
    grads = torch.autograd.grad(loss, params)
    assert all(g.abs().max() > 0 for g in grads)


def test_sin_and_cos_of_the_inner_loop_are_the_same_bits_as_torch():
    from pipeline.loe import SinCos
    z = (torch.randn(4, 33, 7) * 5).requires_grad_(True)
    s, c = SinCos.apply(z)
    assert torch.equal(s, torch.sin(z)) and torch.equal(c, torch.cos(z))
    gs, gc = torch.randn(4, 33, 7), torch.randn(4, 33, 7)
    (got,) = torch.autograd.grad((s * gs).sum() + (c * gc).sum(), z)
    (want,) = torch.autograd.grad((torch.sin(z) * gs).sum() + (torch.cos(z) * gc).sum(), z)
    assert torch.equal(got, want)
    (only_sin,) = torch.autograd.grad((SinCos.apply(z)[0] * gs).sum(), z)
    assert torch.equal(only_sin, gs * torch.cos(z))
