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
