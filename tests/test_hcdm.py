import pytest
import torch

from pipeline import config
from pipeline.generation import binary_std_table, control_latents, part_std, std_tables
from pipeline.hcdm import HCDM, HCDMTrainer
from pipeline.training import Checkpointer, StepLog


def test_condition_codes_shape_binary_and_causal():
    model = HCDM(layers=4, latent_dim=5, binary_len=6, hidden=32, blocks=2, timesteps=10)
    z = torch.randn(3, 4, 5)
    codes = model.condition_codes(z)
    assert codes.shape == (3, 4, 6)
    assert set(codes.unique().tolist()) <= {0.0, 1.0}
    assert (codes[:, 0] == 0).all()                                   # c^1 = 0
    # c^l sees h^<l only: changing h^l and later layers leaves c^1..c^l as they were.
    z2 = z.clone()
    z2[:, 2:] = torch.randn(3, 2, 5)
    assert torch.equal(model.condition_codes(z2)[:, :3], codes[:, :3])
    # ... and c^l does change with h^<l.
    z3 = z.clone()
    z3[:, 0] = -z3[:, 0]
    assert not torch.equal(model.condition_codes(z3)[:, 1], codes[:, 1])


def test_compressor_learns_through_straight_through_estimator():
    model = HCDM(layers=3, latent_dim=4, binary_len=5, hidden=32, blocks=2, timesteps=10)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):   # the zero-initialised output layers pass no gradient back at step 0
        opt.zero_grad()
        model.loss(torch.randn(8, 3, 4, generator=g), g).backward()
        opt.step()
    assert model.compressor.weight.grad.abs().sum() > 0


def test_unconditional_model_has_zero_codes():
    model = HCDM(layers=3, latent_dim=4, binary_len=5, variant="unconditional", hidden=32, blocks=2, timesteps=10)
    assert (model.condition_codes(torch.randn(8, 3, 4)) == 0).all()


def two_layer_data(n, generator):
    """h^1 = s * (2, 0) + noise, h^2 = s * (1.5, -1.5) + noise, s = +-1 with equal odds."""
    s = torch.randint(0, 2, (n, 1), generator=generator).float() * 2 - 1
    h1 = s * torch.tensor([2.0, 0.0]) + 0.1 * torch.randn(n, 2, generator=generator)
    h2 = s * torch.tensor([1.5, -1.5]) + 0.1 * torch.randn(n, 2, generator=generator)
    return torch.stack([h1, h2], dim=1)


def train(variant, tmp_path, precision="fp32", denoiser="skip_mlp", objective="x0"):
    g = torch.Generator().manual_seed(0)
    data = two_layer_data(2000, g)
    cfg = config.HCDM(hidden=64, blocks=2, timesteps=100, steps=800, batch_size=128, lr=2e-3,
                      warmup_steps=20, ema_decay=0.99, log_every=100, checkpoint_every=10_000, precision=precision)
    model = HCDM(layers=2, latent_dim=2, binary_len=2, variant=variant, hidden=64, blocks=2, timesteps=100,
                 denoiser=denoiser, objective=objective)
    trainer = HCDMTrainer(model, cfg)
    trainer.fit(data, Checkpointer(tmp_path / f"{variant}.pt", "x", 10_000), StepLog(tmp_path / "l.csv"), g,
                progress=False)
    return trainer.ema


@pytest.fixture(scope="module")
def conditional_model(tmp_path_factory):
    return train("hierarchical", tmp_path_factory.mktemp("hcdm"))


@pytest.fixture(scope="module")
def film_eps_model(tmp_path_factory):
    return train("hierarchical", tmp_path_factory.mktemp("hcdm_film"), denoiser="mlp", objective="eps")


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("design", ["skip_mlp x0 (the paper's)", "mlp eps"])
def test_hcdm_reproduces_a_known_conditional_distribution(conditional_model, film_eps_model, sampler, design):
    model = conditional_model if design.startswith("skip_mlp") else film_eps_model
    g = torch.Generator().manual_seed(1)
    h = model.sample(400, g, sampler=sampler, steps=50)
    s = torch.sign(h[:, 0, 0])
    # Marginal of h^1: both modes, in equal measure.
    assert 0.35 < (s > 0).float().mean() < 0.65
    # Conditional p(h^2 | h^1): h^2 sits on the mode that h^1 dictates.
    agree = (torch.sign(h[:, 1, 0]) == s) & (torch.sign(h[:, 1, 1]) == -s)
    assert agree.float().mean() > 0.95
    err = (h[:, 1] - s[:, None] * torch.tensor([1.5, -1.5])).abs()
    assert err[agree].median() < 0.3
    # Fixing h^1 and resampling h^2 keeps the mode (the control of fig. 5).
    fixed = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]).repeat(200, 1, 1)
    h2 = model.sample(200, g, prefix=fixed[:, :1], sampler=sampler, steps=50)[:, 1]
    assert (h2[:, 0] > 0).float().mean() > 0.95


def test_bf16_training_learns_the_same_conditional(conditional_model, tmp_path):
    # hcdm.precision bf16 (the CPU default's): the forward in bf16, so other weights, and the same answers.
    model = train("hierarchical", tmp_path, precision="bf16")
    gap = max((a - b).abs().max().item() for a, b in zip(model.parameters(), conditional_model.parameters()))
    assert gap > 1e-4
    g = torch.Generator().manual_seed(1)
    h = model.sample(400, g, steps=50)
    s = torch.sign(h[:, 0, 0])
    assert 0.35 < (s > 0).float().mean() < 0.65
    agree = (torch.sign(h[:, 1, 0]) == s) & (torch.sign(h[:, 1, 1]) == -s)
    assert agree.float().mean() > 0.95


@pytest.fixture(scope="module")
def unconditional_model(tmp_path_factory):
    return train("unconditional", tmp_path_factory.mktemp("hcdm_u"))


def test_unconditional_ablation_loses_the_dependency(unconditional_model):
    model = unconditional_model
    h = model.sample(400, torch.Generator().manual_seed(1), steps=50)
    agree = (torch.sign(h[:, 1, 0]) == torch.sign(h[:, 0, 0])).float().mean()
    assert 0.3 < agree < 0.7            # independent layers: chance agreement


def test_control_latents_share_prefixes_exactly():
    model = HCDM(layers=3, latent_dim=4, binary_len=3, hidden=32, blocks=2, timesteps=20).eval()
    anchors = torch.randn(2, 3, 4)
    tree = control_latents(model, anchors, completions=3, generator=torch.Generator().manual_seed(0),
                           sampler="ddim", steps=5)
    assert tree.shape == (2, 3, 3, 3, 4)
    for k in range(3):
        assert torch.equal(tree[:, k, :, :k], anchors[:, None, :k].expand(2, 3, k, 4))
        assert not torch.equal(tree[:, k, 0, k:], tree[:, k, 1, k:])


def test_std_table_has_one_entry_per_part():
    model = HCDM(layers=4, latent_dim=3, binary_len=3, hidden=32, blocks=2, timesteps=20).eval()
    table = binary_std_table(model, samples=5, anchors=2, generator=torch.Generator().manual_seed(0),
                             sampler="ddim", steps=5)
    assert list(table) == ["std_1", "std_12", "std_23", "std_34"]
    assert all(v >= 0 for v in table.values())


def test_std_table_standard_error_is_the_spread_of_its_anchors_over_their_root_count(conditional_model):
    """Each std_{l,l+1} is a mean over anchors: its standard error is the anchors' spread (ddof 1) / sqrt(A),
    the same draws recomputed here; std_1 (one group) and a single anchor have none."""
    from pipeline.generation import std_tables

    t = std_tables(conditional_model, samples=50, anchors=4, generator=torch.Generator().manual_seed(5),
                   sampler="ddim", steps=10)
    g = torch.Generator().manual_seed(5)
    conditional_model.sample(50, g, stop=1, sampler="ddim", steps=10)          # std_1's draws
    prefixes = conditional_model.sample(4, g, stop=1, sampler="ddim", steps=10)[:, :1]
    drawn = conditional_model.sample(200, g, prefix=prefixes.repeat_interleave(50, 0), stop=2, sampler="ddim",
                                     steps=10)[:, 1:2]
    z = (drawn - conditional_model.mean[1:2]) / conditional_model.std[1:2]
    per_anchor = z.reshape(4, 50, -1).std(1).mean(1)
    assert t["standardised"]["std_12"] == pytest.approx(per_anchor.mean().item(), rel=1e-6)
    assert t["standard_error"]["std_12"] == pytest.approx(per_anchor.std().item() / 2, rel=1e-6)
    assert t["standard_error"]["std_1"] is None
    one = std_tables(conditional_model, samples=20, anchors=1, generator=torch.Generator().manual_seed(5),
                     sampler="ddim", steps=10)
    assert one["standard_error"] == {"std_1": None, "std_12": None}


def test_part_std_of_a_trained_model_matches_the_data(conditional_model):
    # Trained on the two-mode data: each part's standardised spread should be near 1.
    stds = part_std(conditional_model, 400, torch.Generator().manual_seed(2), "ddim", 50)
    assert len(stds) == 2 and all(0.8 < s < 1.2 for s in stds), stds


def test_std_table_on_a_known_conditional(conditional_model, unconditional_model):
    # h^2 = mode(h^1) * (1.5, -1.5) + 0.1 noise. Once h^1 is fixed, the conditional model
    # keeps h^2 on one mode; the unconditional one still spreads it over both (std ~1).
    def table(model):
        return binary_std_table(model, samples=200, anchors=4, generator=torch.Generator().manual_seed(3),
                                sampler="ddim", steps=50)

    cond, uncond = table(conditional_model), table(unconditional_model)
    assert 0.8 < cond["std_1"] < 1.2 and 0.8 < uncond["std_1"] < 1.2
    assert uncond["std_12"] > 0.85
    assert cond["std_12"] < 0.6 * uncond["std_12"]


def test_std_table_anchored_on_data_has_the_datas_std_1_in_both_units(conditional_model, unconditional_model):
    # The paper's Table 2 reading: std_1 from the data itself (so equal for every binary length), the
    # prefixes h^1 of random data instances; raw units next to standardised ones.
    data = two_layer_data(2000, torch.Generator().manual_seed(0))          # the models' training data
    tables = {}
    for name, model in (("cond", conditional_model), ("uncond", unconditional_model)):
        tables[name] = std_tables(model, samples=200, anchors=4, generator=torch.Generator().manual_seed(3),
                                  sampler="ddim", steps=50, data=data)
    expected_raw = data[:, 0].std(0).mean().item()                          # (~2.0 + 0.1) / 2
    for t in tables.values():
        assert t["raw"]["std_1"] == pytest.approx(expected_raw, rel=1e-6)
        assert t["standardised"]["std_1"] == pytest.approx(1.0, abs=1e-5)   # train-set std = 1 by definition
    assert tables["cond"]["raw"]["std_1"] == tables["uncond"]["raw"]["std_1"]
    # h^2 = +-(1.5, -1.5) + 0.1 noise: raw std 1.5 if h^1 carries nothing, 0.1 if the mode follows h^1
    # exactly; this small model gets most of the way (as in the model's own reading above).
    assert 1.2 < tables["uncond"]["raw"]["std_12"] < 2.0
    assert tables["cond"]["raw"]["std_12"] < 0.65 * tables["uncond"]["raw"]["std_12"]
    own = std_tables(conditional_model, samples=200, anchors=4, generator=torch.Generator().manual_seed(3),
                     sampler="ddim", steps=50)
    assert own["standardised"] == binary_std_table(conditional_model, 200, 4, torch.Generator().manual_seed(3),
                                                   "ddim", 50)
    assert own["raw"]["std_1"] != pytest.approx(expected_raw, rel=1e-6)     # the model's own reading samples it


def test_std_table_parts_group_layers(conditional_model):
    """Grouping both layers into one part: std_1 is then the spread of all of h^1, h^2 together."""
    data = two_layer_data(2000, torch.Generator().manual_seed(0))
    one = std_tables(conditional_model, samples=50, anchors=2, generator=torch.Generator().manual_seed(0),
                     sampler="ddim", steps=10, data=data, parts=[2])
    assert list(one["raw"]) == ["std_1"]
    assert one["raw"]["std_1"] == pytest.approx(data.flatten(1).std(0).mean().item(), rel=1e-6)
    per_layer = std_tables(conditional_model, samples=50, anchors=2, generator=torch.Generator().manual_seed(0),
                           sampler="ddim", steps=10, data=data, parts=[1, 1])
    assert list(per_layer["raw"]) == ["std_1", "std_12"]
    assert len(part_std(conditional_model, 50, torch.Generator().manual_seed(0), "ddim", 10, parts=[2])) == 1
    with pytest.raises(ValueError, match="summing to 2"):
        std_tables(conditional_model, 5, 2, torch.Generator(), "ddim", 5, parts=[1, 2])


def test_skip_mlp_adds_the_first_halfs_inputs_to_the_second_half_in_reverse():
    """mNIF's long skips: with 4 blocks, block 3 reads out2 + in1 and block 4 reads out3 + in0."""
    from pipeline.hcdm import SkipMLP

    net = SkipMLP(latent_dim=3, layers=2, binary_len=4, hidden=32, blocks=4, dropout=0.0)
    for block in net.blocks:   # non-zero last layers, so that every block changes its input
        torch.nn.init.normal_(block.outer[3].weight, std=0.1)
    seen = []
    hooks = [b.register_forward_hook(lambda m, args, out: seen.append((args[0], out))) for b in net.blocks]
    x, t = torch.randn(5, 3), torch.tensor([0, 10, 100, 500, 999])
    net(x, t, torch.tensor([0, 1, 0, 1, 1]), torch.randint(0, 2, (5, 4)).float())
    for h in hooks:
        h.remove()
    (in0, out0), (in1, out1), (in2, out2), (in3, _) = seen
    assert torch.equal(in0, net.inp(x)) and torch.equal(in1, out0)
    assert torch.allclose(in2, out1 + in1, atol=1e-6)
    assert torch.allclose(in3, out2 + in0, atol=1e-6)
    assert sum(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 16 for m in net.modules()) == 9
    with pytest.raises(ValueError, match="blocks must be even"):
        SkipMLP(3, 2, 4, hidden=32, blocks=3, dropout=0.0)


@pytest.mark.parametrize("objective", ["x0", "eps"])
def test_loss_regresses_the_objectives_target_exactly(objective):
    """x0: the network's output against h_0 (Eq. 6, mNIF's predict_xstart); eps: against the noise."""
    import torch.nn.functional as F

    model = HCDM(layers=2, latent_dim=3, binary_len=4, hidden=32, blocks=2, timesteps=50, objective=objective)
    h = torch.randn(6, 2, 3)
    model.set_statistics(torch.randn(100, 2, 3) * 2 + 1)
    loss = model.loss(h, torch.Generator().manual_seed(7))
    # The same draws by hand: t, then the noise, from the same generator.
    g = torch.Generator().manual_seed(7)
    z = model.standardise(h).reshape(12, 3)
    t = torch.randint(50, (12,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    ab = model.alphas_cumprod[t][:, None]
    out = model.denoiser(ab.sqrt() * z + (1 - ab).sqrt() * noise, t, torch.arange(2).repeat(6),
                         model.condition_codes(model.standardise(h)).reshape(12, -1))
    assert loss.item() == pytest.approx(F.mse_loss(out, z if objective == "x0" else noise).item(), rel=1e-6)


@pytest.mark.parametrize("objective", ["x0", "eps"])
def test_prediction_reads_the_output_as_its_objective(objective):
    model = HCDM(layers=2, latent_dim=3, binary_len=4, hidden=32, blocks=2, timesteps=50, objective=objective)
    out = torch.tensor([[0.5, -1.0, 2.0]])
    model.denoiser.forward = lambda x, t, layer, code: out
    x, t = torch.tensor([[0.3, 0.1, -0.2]]), torch.tensor([20])
    x0, eps = model._predict(x, t, torch.tensor([1]), torch.zeros(1, 4))
    ab = model.alphas_cumprod[20]
    if objective == "x0":
        assert torch.equal(x0, out)
    else:
        assert torch.allclose(eps, out, atol=1e-5)
    assert torch.allclose(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, x, atol=1e-6)   # the same x_t either way


def test_random_compressor_stays_fixed_and_saves_like_a_learned_one():
    model = HCDM(layers=3, latent_dim=4, binary_len=5, hidden=32, blocks=2, timesteps=10, compressor="random")
    before = model.compressor.weight.clone()
    assert all(p is not model.compressor.weight for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        model.loss(torch.randn(8, 3, 4, generator=g), g).backward()
        opt.step()
    assert torch.equal(model.compressor.weight, before)
    learned = HCDM(layers=3, latent_dim=4, binary_len=5, hidden=32, blocks=2, timesteps=10)
    learned.load_state_dict(model.state_dict())      # same keys: a file says nothing of how W was made
    assert torch.equal(learned.compressor.weight, before)


def test_a_model_saved_before_the_denoiser_choice_loads_as_the_film_eps_design(tmp_path):
    from pipeline.hcdm import load_hcdm, save_hcdm

    old = HCDM(layers=2, latent_dim=3, binary_len=4, hidden=32, blocks=1, timesteps=10, denoiser="mlp", objective="eps")
    save_hcdm(tmp_path / "hcdm.pt", old)
    state = torch.load(tmp_path / "hcdm.pt", weights_only=True)
    for key in ("denoiser", "objective", "compressor"):
        del state["arch"][key]
    torch.save(state, tmp_path / "hcdm.pt")
    model = load_hcdm(tmp_path / "hcdm.pt")
    assert model.arch["denoiser"] == "mlp" and model.objective == "eps"
    z = torch.randn(2, 3)
    args = (torch.tensor([1, 5]), torch.tensor([0, 1]), torch.zeros(2, 4))
    assert torch.equal(model.denoiser(z, *args), old.denoiser(z, *args))


def test_memorised_floor_is_zero_for_unique_codes_and_the_group_spread_otherwise():
    from pipeline.generation import memorised_std_table

    model = HCDM(layers=2, latent_dim=2, binary_len=1, hidden=32, blocks=2, timesteps=10, compressor="random")
    # One bit from h^1: its sign along W's row. Two groups of h^2 values with known population spreads.
    model.compressor.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    h1 = torch.tensor([[1.0, 0], [2, 0], [3, 0], [-1, 0], [-2, 0], [-3, 0]])
    h2 = torch.tensor([[0.0, 0], [2, 0], [4, 0], [1, 1], [1, 1], [1, 1]])
    data = torch.stack([h1, h2], 1)
    model.mean.zero_(), model.std.fill_(1.0)         # standardised = raw, to read the numbers off
    floor = memorised_std_table(model, data)
    group_std = torch.tensor([0.0, 2, 4]).std(unbiased=False).item() / 2   # dim 0 spreads, dim 1 does not
    assert floor["standardised"]["std_12"] == pytest.approx((3 * group_std + 3 * 0.0) / 6)
    assert floor["distinct_codes"]["std_12"] == 2 and floor["instances_per_anchor_code"]["std_12"] == 3
    model.compressor.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.0]]))  # every code the same: the marginal
    assert memorised_std_table(model, data)["standardised"]["std_12"] == pytest.approx(
        data[:, 1].std(0, unbiased=False).mean().item())


def test_conditional_view_of_a_known_conditional_is_narrow(conditional_model, unconditional_model, tmp_path):
    """fig. 7b,c: with h^1 drawn, h^2 | c^2 stays on one mode of the two (a small share of the
    marginal's spread); the unconditional prior spreads it over both."""
    from pipeline.latent_views import conditionals, plot_conditionals

    data = two_layer_data(2000, torch.Generator().manual_seed(0))
    shares = {}
    for name, model in (("cond", conditional_model), ("uncond", unconditional_model)):
        (view,) = conditionals(model, data, anchors=4, samples=100, generator=torch.Generator().manual_seed(5),
                               sampler="ddim", steps=30)
        assert view["layers"] == [1, 2] and view["draws"].shape == (4, 100, 2) and view["anchors"].shape == (4, 2)
        shares[name] = view["conditional_spread_share"]
    assert shares["cond"] < 0.2 and shares["uncond"] > 0.6
    plot_conditionals(tmp_path / "v.png", [view])
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_the_denoisers_group_norm_equals_torchs():
    """hcdm.GroupNorm computes nn.GroupNorm's statistics through the layer-norm kernels (faster on a CPU)."""
    from pipeline.hcdm import GroupNorm
    torch.manual_seed(0)
    ours, theirs = GroupNorm(16, 64), torch.nn.GroupNorm(16, 64)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = (torch.randn(40, 64) * 3 + 1).requires_grad_(True)
    assert torch.allclose(ours(x), theirs(x), rtol=0, atol=1e-5)
    g = torch.randn(40, 64)
    (a,) = torch.autograd.grad((ours(x) * g).sum(), x)
    (b,) = torch.autograd.grad((theirs(x) * g).sum(), x)
    assert torch.allclose(a, b, rtol=0, atol=1e-5)


def test_ddim_with_no_step_is_refused_not_returned_as_noise():
    model = HCDM(layers=2, latent_dim=2, binary_len=1, hidden=32, blocks=2, timesteps=10)
    with pytest.raises(ValueError, match="DDIM steps must be >= 1, got 0"):
        model.sample(2, torch.Generator().manual_seed(0), sampler="ddim", steps=0)


def test_the_sampling_copy_averages_the_denoiser_and_takes_the_live_compressor(tmp_path):
    """Codes are W's sign pattern: the EMA copy samples with the codes training used, not an averaged W's."""
    g = torch.Generator().manual_seed(0)
    cfg = config.HCDM(hidden=32, blocks=2, timesteps=10, steps=30, batch_size=32, lr=1e-2, warmup_steps=2,
                      ema_decay=0.9, log_every=10, checkpoint_every=10_000)
    model = HCDM(layers=2, latent_dim=2, binary_len=2, hidden=32, blocks=2, timesteps=10)
    trainer = HCDMTrainer(model, cfg)
    trainer.fit(two_layer_data(256, g), Checkpointer(tmp_path / "c.pt", "x", 10_000), StepLog(tmp_path / "l.csv"), g,
                progress=False)
    assert torch.equal(trainer.ema.compressor.weight, model.compressor.weight)
    z = torch.randn(64, 2, 2, generator=g)
    assert torch.equal(trainer.ema.condition_codes(z), model.condition_codes(z))
    averaged = [name for name, p in trainer.ema.named_parameters() if not torch.equal(p, dict(model.named_parameters())[name])]
    assert len(averaged) == len(list(model.parameters())) - 1          # every denoiser weight is the average


def test_the_linear_schedule_stays_a_diffusion_at_few_steps_and_is_ddpms_at_a_thousand():
    """Scaled to T steps, the linear schedule's end would pass 1 below T = 20 (T = 10: 2.0) and make alpha-bar
    negative, so the loss NaN: clamped at 0.999 as the cosine one; at T = 1000 it is DDPM's 1e-4 .. 0.02."""
    from pipeline.hcdm import beta_schedule

    assert torch.equal(beta_schedule("linear", 1000), torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    for steps in (2, 10, 19):
        betas = beta_schedule("linear", steps)
        assert betas.max() == 0.999 and torch.cumprod(1 - betas, 0).min() > 0
    model = HCDM(layers=2, latent_dim=4, binary_len=3, hidden=16, timesteps=10, schedule="linear")
    model.set_statistics(torch.randn(8, 2, 4))
    assert torch.isfinite(model.loss(torch.randn(8, 2, 4), torch.Generator().manual_seed(0)))


def test_a_prior_over_one_train_instance_is_refused_in_one_line():
    """The standardisation divides by each dimension's spread over the train split: with one instance that is
    NaN, which would stop training as a divergence with advice to lower the rate."""
    from pipeline.errors import DataError

    model = HCDM(layers=2, latent_dim=4, binary_len=3, hidden=16)
    with pytest.raises(DataError, match="1 train latent: the prior standardises each dimension"):
        model.set_statistics(torch.randn(1, 2, 4))


@pytest.mark.parametrize("objective", ["x0", "eps"])
def test_both_samplers_draw_the_data_distribution_through_an_exact_denoiser(objective):
    """Unit Gaussian data, whose exact denoiser is E[x0 | x_t] = sqrt(ab_t) x_t (eps: sqrt(1 - ab_t) x_t): DDPM's
    1000 steps draw std 0.997, DDIM's 50 steps 0.975 (its discretisation: docs/evaluation.md), mean 0."""
    m = HCDM(layers=2, latent_dim=16, binary_len=3, hidden=16, objective=objective)

    class Exact(torch.nn.Module):
        def forward(self, x, t, layers, codes):
            ab = m.alphas_cumprod[t][:, None]
            return ab.sqrt() * x if objective == "x0" else (1 - ab).sqrt() * x
    m.denoiser = Exact()
    codes = torch.zeros(4000, 3)
    for sampler, steps, std in (("ddpm", 0, 0.997), ("ddim", 50, 0.975)):
        x = m.sample_layer(0, codes, torch.Generator().manual_seed(0), sampler, steps)
        assert abs(x.std().item() - std) < 0.01 and abs(x.mean().item()) < 0.01, (sampler, x.std().item())


def test_a_latent_bank_of_another_stage_1_is_refused_naming_the_file():
    """loe.* edited and train_hcdm run alone: one line, not a tensor-size traceback inside set_statistics."""
    from pipeline.errors import DataError
    from pipeline.hcdm import build_hcdm
    cfg = config.from_dict({"loe": {"layers": 7, "latent_dim": 32}, "hcdm": {"hidden": 64, "blocks": 2}})
    assert build_hcdm(cfg, torch.zeros(4, 7, 32)).layers == 7
    with pytest.raises(DataError, match=r"latents.npz: holds 5 layers of 64 latents, and params.yaml's loe.layers "
                                        r"and loe.latent_dim say 7 of 32"):
        build_hcdm(cfg, torch.zeros(4, 5, 64))
