import math

import pytest
import torch

from pipeline import metrics


def test_psnr_known_value():
    a = torch.zeros(2, 3, 8, 8)
    b = a + torch.tensor([0.1, 0.01])[:, None, None, None]     # MSE 1e-2 and 1e-4
    assert torch.allclose(metrics.psnr(b, a), torch.tensor([20.0, 40.0]), atol=1e-4)


def test_ssim_identical_is_one_and_constant_images_match_closed_form():
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(metrics.ssim(x, x), torch.ones(3), atol=1e-5)
    # Constant images: variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.3, 0.7, 0.01 ** 2
    pa, pb = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert math.isclose(metrics.ssim(pa, pb).item(), (2 * a * b + c1) / (a * a + b * b + c1), rel_tol=1e-5)


def test_ssim_drops_with_noise_and_is_symmetric():
    x = torch.rand(1, 3, 32, 32)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    s = metrics.ssim(x, noisy).item()
    assert 0 < s < 0.9
    assert math.isclose(s, metrics.ssim(noisy, x).item(), rel_tol=1e-5)


def test_memorisation_distance_finds_the_nearest_training_signal():
    train = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    generated = torch.tensor([[3.0, 4.0], [0.0, 1.0], [9.0, 0.0]])
    assert torch.allclose(metrics.memorisation_distance(generated, train), torch.tensor([0.0, 1.0, 1.0]))
    _, idx = metrics.nearest_distances(generated, train)
    assert idx.tolist() == [1, 0, 2]


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    import os

    import pytest

    from pipeline import io

    io.save_json(tmp_path / "m.json", {"a": 1})
    assert oct(os.stat(tmp_path / "m.json").st_mode & 0o777) != oct(0o600)
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "m.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert (tmp_path / "m.json").read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1


def test_directory_outputs_are_replaced_whole(tmp_path):
    import pytest

    from pipeline import io

    out = tmp_path / "files"
    io.save_directory(out, {"a.ply": b"ply 1", "b.ply": b"ply 2"})
    io.save_directory(out, {"c.ply": b"ply 3"})          # a rerun: the old files go
    assert sorted(p.name for p in out.iterdir()) == ["c.ply"] and (out / "c.ply").read_bytes() == b"ply 3"
    with pytest.raises(TypeError):
        io.save_directory(out, {"d.ply": "not bytes"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"] and (out / "c.ply").exists()


def test_the_nearest_search_in_blocks_finds_what_the_search_over_all_references_finds():
    """References made a block at a time (metrics.Rows, each block made once for every query set) give the
    whole search's distances and indices; an exact copy is at distance 0, and of two equal references the
    search names the lower index, across blocks too."""
    g = torch.Generator().manual_seed(0)
    refs = torch.rand(37, 5, generator=g, dtype=torch.float64).float()
    queries = [torch.rand(11, 5, generator=g), refs[[3, 30]]]
    whole = metrics.nearest_many(queries, refs)
    made = []

    def make(a, b):
        made.append((a, b))
        return refs[a:b]
    blocks = metrics.nearest_many(queries, metrics.Rows(37, make, 8), chunk=4)
    assert made == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 37)]
    brute = torch.cdist(queries[0].double(), refs.double())                   # an independent reference
    assert torch.equal(blocks[0][1], brute.argmin(1)) and torch.allclose(blocks[0][0].double(), brute.min(1).values,
                                                                         atol=1e-6)
    for (d_whole, i_whole), (d_blocks, i_blocks) in zip(whole, blocks):
        assert torch.equal(i_whole, i_blocks) and torch.allclose(d_whole, d_blocks, atol=1e-6)
    assert blocks[1][1].tolist() == [3, 30] and blocks[1][0].max() < 1e-3
    twice = torch.cat([refs[:8], refs[:8]])
    _, index = metrics.nearest_distances(refs[:8], metrics.Rows(16, lambda a, b: twice[a:b], 8))
    assert index.tolist() == list(range(8))
    assert metrics.block_rows(3072) == 43690 and metrics.block_rows(64 ** 3, multiple=32) == 512


def test_a_nan_or_inf_in_the_nearest_search_is_refused_not_dropped():
    """A NaN row makes a block's minimum NaN, never the smaller, so every query would skip that block (and a
    NaN query get a made-up neighbour): both stop with one line naming the rows."""
    from pipeline.errors import NonFiniteError

    refs = torch.rand(10, 4)
    bad = refs.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(NonFiniteError, match=r"reference rows 0-9: 1 values are NaN or inf"):
        metrics.nearest_many([torch.rand(3, 4)], bad)
    with pytest.raises(NonFiniteError, match=r"query set 2: 1 values are NaN or inf"):
        metrics.nearest_many([torch.rand(3, 4), bad[5:8]], refs)
