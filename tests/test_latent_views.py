import torch

from pipeline.hcdm import HCDM
from pipeline.latent_views import code_clusters, kmeans, numbers, pca, plot_code_clusters


def blobs(n_per, centres, spread, generator):
    return torch.cat([c + spread * torch.randn(n_per, len(c), generator=generator) for c in centres])


def test_kmeans_separates_well_apart_blobs_exactly():
    g = torch.Generator().manual_seed(0)
    centres = [torch.tensor([0.0, 0.0]), torch.tensor([10.0, 0.0]), torch.tensor([0.0, 10.0])]
    x = blobs(50, centres, 0.5, g)
    found, labels = kmeans(x, 3, g)
    for i in range(3):   # each blob is one cluster, whatever its number
        assert len(set(labels[50 * i:50 * (i + 1)].tolist())) == 1
    assert len(set(labels.tolist())) == 3
    assert max(torch.cdist(centres[i][None], found).min().item() for i in range(3)) < 0.3    # every centre found


def test_kmeans_with_more_clusters_than_distinct_points_puts_each_point_on_its_own_centre():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    centres, labels = kmeans(x, 8, torch.Generator().manual_seed(0))
    assert centres.shape == (8, 2) and torch.isfinite(centres).all()
    assert torch.equal(centres[labels], x)   # every point sits exactly on its centre
    assert labels[1] == labels[2] and len(set(labels.tolist())) == 3


def test_pca_of_points_on_a_line_explains_everything_with_one_direction():
    t = torch.linspace(-1, 1, 101)
    direction = torch.tensor([3.0, 4.0, 0.0]) / 5
    x = t[:, None] * direction + torch.tensor([1.0, 2.0, 3.0])
    mean, components, share = pca(x)
    assert torch.allclose(mean, torch.tensor([1.0, 2.0, 3.0]), atol=1e-6)
    assert abs(abs(float(components[0] @ direction)) - 1) < 1e-5
    assert share[0] > 0.99999 and share.sum() <= 1 + 1e-6


def test_a_code_that_decides_the_next_layers_cluster_puts_every_neighbour_in_the_anchors_cluster(tmp_path):
    # h^2's blob is chosen by the sign of h^1's first value, and c^2 is exactly that sign.
    g = torch.Generator().manual_seed(1)
    n = 200
    s = (torch.arange(n) % 2).float() * 2 - 1
    h1 = torch.stack([s * (1 + torch.rand(n, generator=g)), torch.randn(n, generator=g)], 1)
    h2 = torch.stack([s * 5, torch.zeros(n)], 1) + 0.1 * torch.randn(n, 2, generator=g)
    model = HCDM(layers=2, latent_dim=2, binary_len=1, hidden=32, blocks=2, timesteps=10, compressor="random")
    model.compressor.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    model.mean.zero_(), model.std.fill_(1.0)
    views = code_clusters(model, torch.stack([h1, h2], 1), g, clusters=2, anchors=3, neighbours=20)
    (layer2,) = views
    assert layer2["layer"] == 2
    assert all(a["same_cluster"] == 1.0 and a["max_hamming"] == 0 for a in layer2["anchors"])
    assert all(a["chance"] == round(99 / 199, 4) for a in layer2["anchors"])      # 100 a blob, less the anchor
    assert len(layer2["anchors"]) == 3 and len(layer2["measured"]) == 200 and layer2["measured"][:3] == layer2["anchors"]
    summary = numbers([], views)["code_clusters"][0]
    assert summary["mean_same_cluster"] == 1.0 and summary["mean_same_cluster_se"] == 0.0 and "points" not in summary
    assert summary["measured_anchors"] == 200 and summary["mean_chance"] == round(99 / 199, 4)
    plot_code_clusters(tmp_path / "c.png", views)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_a_code_that_says_nothing_of_the_next_layer_gives_chance_and_a_prior_without_codes_no_view():
    """c^2 the sign of h^1's first value, h^2's blob drawn independently of it: the anchors' neighbours fall in
    their cluster at the cluster's own share (the view's null), not at the commonest cluster's share among 20."""
    g = torch.Generator().manual_seed(2)
    n = 400
    s = (torch.arange(n) % 2).float() * 2 - 1
    blob = (torch.randperm(n, generator=g) % 2).float() * 2 - 1
    h1 = torch.stack([s * (1 + torch.rand(n, generator=g)), torch.randn(n, generator=g)], 1)
    h2 = torch.stack([blob * 5, torch.zeros(n)], 1) + 0.1 * torch.randn(n, 2, generator=g)
    model = HCDM(layers=2, latent_dim=2, binary_len=1, hidden=32, blocks=2, timesteps=10, compressor="random")
    model.compressor.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    model.mean.zero_(), model.std.fill_(1.0)
    (layer2,) = code_clusters(model, torch.stack([h1, h2], 1), g, clusters=2, neighbours=100)
    summary = numbers([], [layer2])["code_clusters"][0]
    assert abs(summary["mean_same_cluster"] - summary["mean_chance"]) < 3 * summary["mean_same_cluster_se"] + 0.01
    assert all(0.45 < a["chance"] < 0.55 for a in layer2["measured"]) and summary["measured_anchors"] == 200
    flat = HCDM(layers=2, latent_dim=2, binary_len=1, hidden=32, blocks=2, timesteps=10, variant="unconditional")
    assert code_clusters(flat, torch.stack([h1, h2], 1), g) == []
