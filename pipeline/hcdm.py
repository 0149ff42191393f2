"""Stage-2: the Hierarchical Controllable Diffusion Model (paper sec. 3.3).

p(h) = p(h^1) prod_l p(h^l | h^<l). One denoiser serves every layer; it sees
the noisy layer latent h^l_t, the step t, the layer index l and the binary
condition code c^l of the earlier layers (fig. 3):

    v^l = W . zero_pad(concat(h^1..h^{l-1}))   W: (binary_len, L*H)
    c^l = Q(sigmoid(v^l)),   c^1 = 0

Q thresholds at 1/2. The paper calls W "a compressor" and does not say how
it is obtained; `compressor` chooses: `learned` trains W with the denoiser
through a straight-through estimator (hard bits forward, the sigmoid's
gradient backward), `random` keeps its random initial value.

The denoiser (`denoiser`): `skip_mlp` is the latent denoiser mNIF uses and
the paper builds on (mNIF's `net_type: functa`): a residual MLP whose blocks
(GroupNorm, SiLU, linear; the 64-d sinusoidal time embedding added in the
middle) are split in two halves, the second half's block i adding the input
of the first half's block n/2-1-i (U-Net-style long skips). `mlp` is a
residual MLP with LayerNorm and FiLM conditioning and no long skips. Both
see (t, l, c^l) as one embedding: time embedding + layer embedding + a
linear map of the code.

The objective (`objective`): `x0` predicts h_0 and forms the reverse mean
from it (Eq. 6; mNIF's `predict_xstart: True`); `eps` predicts the noise
(DDPM). Latents are standardised per dimension with train-set statistics;
EMA weights for sampling; DDPM ancestral or DDIM (eta = 0) sampling.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import artifacts, io
from .config import HCDM as HCDMConfig
from .errors import DataError
from .training import Checkpointer, DivergenceGuard, StepLog, train_loop, warmup_cosine

X0_CLIP = 6.0


def beta_schedule(kind: str, timesteps: int) -> torch.Tensor:
    if kind == "linear":
        scale = 1000 / timesteps
        # Below T = 20 the scaled end passes 1 (T = 10: 2.0), which would make alpha-bar negative: clamped as the
        # cosine schedule is.
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64).clamp(max=0.999)
    # Cosine schedule (Nichol & Dhariwal 2021).
    s = 0.008
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    ab = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    ab = ab / ab[0]
    return (1 - ab[1:] / ab[:-1]).clamp(0, 0.999)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ConditionCompressor(nn.Module):
    """h^<l -> c^l for every layer at once: (B, L, H) -> (B, L, binary_len) in {0, 1}.

    `learned`: W is a parameter trained through the straight-through estimator;
    otherwise W stays the fixed random projection it starts as (a buffer of the
    same name, so both kinds save and load alike).
    """

    def __init__(self, layers: int, latent_dim: int, binary_len: int, learned: bool = True):
        super().__init__()
        self.layers, self.latent_dim = layers, latent_dim
        weight = torch.randn(binary_len, layers * latent_dim) / math.sqrt(latent_dim)
        if learned:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
        # masks[l] keeps the entries of layers < l: the zero padding of fig. 3.
        owner = torch.arange(layers * latent_dim) // latent_dim
        self.register_buffer("masks", (owner[None, :] < torch.arange(layers)[:, None]).float(), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.flatten(1)                                                # (B, L*H)
        v = torch.einsum("blf,cf->blc", flat[:, None, :] * self.masks[None], self.weight)   # (B, L, bits)
        soft = torch.sigmoid(v)
        hard = (soft > 0.5).to(soft.dtype)
        code = hard + (soft - soft.detach())     # straight-through; exactly the hard bits in value
        return code * (torch.arange(self.layers, device=h.device) > 0).to(code.dtype)[None, :, None]


class Conditioned(nn.Module):
    """A denoiser's view of (t, l, c^l): one embedding of `dim` values, the sinusoidal time
    features through `time_layers` linear layers, plus a layer embedding, plus a linear map of
    the code (the way class labels join the time embedding in conditional diffusion)."""

    def add_conditioning(self, dim: int, layers: int, binary_len: int, time_layers: int) -> None:
        self.emb_dim = dim
        mlp = [nn.Linear(dim, dim)]
        for _ in range(time_layers - 1):
            mlp += [nn.SiLU(), nn.Linear(dim, dim)]
        self.time = nn.Sequential(*mlp)
        self.layer = nn.Embedding(layers, dim)
        self.code = nn.Linear(binary_len, dim)

    def embed(self, t, layer, code):
        return self.time(timestep_embedding(t, self.emb_dim)) + self.layer(layer) + self.code(code)


class FiLMBlock(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.fc1 = nn.Linear(hidden, 2 * hidden)
        self.fc2 = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb).chunk(2, dim=-1)
        y = self.norm(x) * (1 + scale) + shift
        return x + self.fc2(self.dropout(F.silu(self.fc1(y))))


class FiLMMLP(Conditioned):
    """`mlp`: a residual MLP with LayerNorm + FiLM conditioning, no long skips."""

    def __init__(self, latent_dim: int, layers: int, binary_len: int, hidden: int, blocks: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(latent_dim, hidden)
        self.add_conditioning(hidden, layers, binary_len, time_layers=2)
        self.blocks = nn.ModuleList(FiLMBlock(hidden, dropout) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, latent_dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x, t, layer, code):
        emb = F.silu(self.embed(t, layer, code))
        y = self.inp(x)
        for block in self.blocks:
            y = block(y, emb)
        return self.out(y)


SKIP_GROUPS = 16        # GroupNorm groups of mNIF's latent denoiser (num_hid_groups)
SKIP_TIME_DIM = 64      # its time-embedding width (num_time_emb_channels)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm over (N, C) rows, computed as a layer norm of the (N, G, C/G) view: the same
    statistics (each group's channels are contiguous), parameters and state-dict keys, equal to
    nn.GroupNorm's output within 1e-6. Why: on 2 CPU cores torch's group norm of a (640, 256)
    batch took 1.54 ms forward + backward against 0.64 ms for the layer-norm kernels, a quarter
    of the default's HCDM training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            return super().forward(x)
        y = F.layer_norm(x.view(x.shape[0], self.num_groups, -1), (x.shape[1] // self.num_groups,), eps=self.eps)
        return torch.addcmul(self.bias, y.view_as(x), self.weight) if self.affine else y.view_as(x)


class SkipBlock(nn.Module):
    """mNIF's residual block: x + Lin(Drop(SiLU(GN(Lin(SiLU(GN(x))) + Lin(SiLU(emb))))), the last Lin zero."""

    def __init__(self, hidden: int, emb_dim: int, dropout: float):
        super().__init__()
        self.inner = nn.Sequential(GroupNorm(SKIP_GROUPS, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, hidden))
        self.outer = nn.Sequential(GroupNorm(SKIP_GROUPS, hidden), nn.SiLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, hidden))
        for lin in (self.inner[2], self.emb[1]):
            nn.init.kaiming_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.outer[3].weight)
        nn.init.zeros_(self.outer[3].bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.outer(self.inner(x) + self.emb(emb))


class SkipMLP(Conditioned):
    """`skip_mlp`: mNIF's latent denoiser (`net_type: functa`) with U-Net-style long skips.

    blocks/2 blocks go "down", storing their inputs; the other half go "up",
    block i of them reading h + the input of down-block blocks/2-1-i.
    """

    def __init__(self, latent_dim: int, layers: int, binary_len: int, hidden: int, blocks: int, dropout: float):
        super().__init__()
        if blocks % 2:
            raise ValueError(f"skip_mlp pairs its blocks by long skips: blocks must be even, got {blocks}")
        self.add_conditioning(SKIP_TIME_DIM, layers, binary_len, time_layers=1)
        self.inp = nn.Linear(latent_dim, hidden)
        self.blocks = nn.ModuleList(SkipBlock(hidden, SKIP_TIME_DIM, dropout) for _ in range(blocks))
        self.out = nn.Sequential(GroupNorm(SKIP_GROUPS, hidden), nn.SiLU(), nn.Linear(hidden, latent_dim))
        for lin in (self.inp, self.out[2], self.time[0]):
            nn.init.kaiming_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x, t, layer, code):
        emb = self.embed(t, layer, code)
        half = len(self.blocks) // 2
        y, skips = self.inp(x), []
        for block in self.blocks[:half]:
            skips.append(y)
            y = block(y, emb)
        for block in self.blocks[half:]:
            y = block(y + skips.pop(), emb)
        return self.out(y)


DENOISERS = {"skip_mlp": SkipMLP, "mlp": FiLMMLP}
OBJECTIVES = ("x0", "eps")
COMPRESSORS = ("learned", "random")


VARIANTS = ("hierarchical", "unconditional", "flat")


class HCDM(nn.Module):
    """The latent prior, in one of three variants over latents (N, L, H):

    - hierarchical: p(h^1) prod p(h^l | c^l), the paper's HCDM;
    - unconditional: prod p(h^l), each layer drawn independently (fig. 8a);
    - flat: one diffusion model over the concatenated latent, no layer chain
      (the Functa / mNIF kind of prior). Internally a chain of one part of
      size L*H, so it cannot fix a prefix h^1..h^k.
    """

    def __init__(self, layers: int, latent_dim: int, binary_len: int, variant: str = "hierarchical",
                 hidden: int = 512, blocks: int = 4, timesteps: int = 1000, schedule: str = "cosine",
                 dropout: float = 0.0, denoiser: str = "skip_mlp", objective: str = "x0",
                 compressor: str = "learned"):
        super().__init__()
        for name, value, allowed in (("variant", variant, VARIANTS), ("denoiser", denoiser, tuple(DENOISERS)),
                                     ("objective", objective, OBJECTIVES), ("compressor", compressor, COMPRESSORS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.layers, self.latent_dim, self.binary_len = layers, latent_dim, binary_len
        self.variant, self.timesteps, self.objective = variant, timesteps, objective
        # The diffusion chain runs over `parts` parts of `part_dim` values each.
        self.parts, self.part_dim = (1, layers * latent_dim) if variant == "flat" else (layers, latent_dim)
        self.arch = dict(layers=layers, latent_dim=latent_dim, binary_len=binary_len, variant=variant,
                         hidden=hidden, blocks=blocks, timesteps=timesteps, schedule=schedule, dropout=dropout,
                         denoiser=denoiser, objective=objective, compressor=compressor)
        self.compressor = ConditionCompressor(self.parts, self.part_dim, binary_len, learned=compressor == "learned")
        self.denoiser = DENOISERS[denoiser](self.part_dim, self.parts, binary_len, hidden, blocks, dropout)
        betas = beta_schedule(schedule, timesteps)
        ab = torch.cumprod(1 - betas, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
        for name, value in dict(
            betas=betas, alphas_cumprod=ab, alphas_cumprod_prev=ab_prev,
            posterior_var=betas * (1 - ab_prev) / (1 - ab),
            posterior_c0=betas * ab_prev.sqrt() / (1 - ab),                 # coefficient of x0
            posterior_ct=(1 - ab_prev) * (1 - betas).sqrt() / (1 - ab),     # coefficient of x_t
        ).items():
            self.register_buffer(name, value.float())
        self.register_buffer("mean", torch.zeros(layers, latent_dim))
        self.register_buffer("std", torch.ones(layers, latent_dim))

    # -- units ---------------------------------------------------------------
    def set_statistics(self, latents: torch.Tensor) -> None:
        """Per-dimension standardisation from the train-set latents (N, L, H)."""
        if len(latents) < 2:
            raise DataError(f"{len(latents)} train latent: the prior standardises each dimension by its spread "
                            "over the train split, which needs two instances or more")
        self.mean.copy_(latents.mean(0))
        self.std.copy_(latents.std(0).clamp_min(1e-6))

    def standardise(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean.to(h.device)) / self.std.to(h.device)

    def unstandardise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z.device) + self.mean.to(z.device)

    # -- conditions ----------------------------------------------------------
    def condition_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised parts (B, parts, part_dim) -> codes (B, parts, binary_len); zero unless hierarchical."""
        codes = self.compressor(z)
        return codes if self.variant == "hierarchical" else torch.zeros_like(codes)

    def _parts(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], self.parts, self.part_dim)

    # -- training ------------------------------------------------------------
    def loss(self, h: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The denoising loss over every layer of a batch of raw latents (B, L, H): the mean squared
        error of the predicted h_0 (objective x0) or of the predicted noise (eps)."""
        z = self._parts(self.standardise(h))
        b, L, H = z.shape
        # Always in fp32, also under bf16 autocast: bf16 rounding before the threshold flipped ~0.2% of
        # the bits, so training would not see exactly the codes that sampling (fp32) computes.
        with torch.autocast(z.device.type, enabled=False):
            codes = self.condition_codes(z.float()).reshape(b * L, -1)
        x0 = z.reshape(b * L, H)
        device = z.device
        layer = torch.arange(L, device=device).repeat(b)
        t = torch.randint(self.timesteps, (b * L,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        ab = self.alphas_cumprod[t][:, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        return F.mse_loss(self.denoiser(xt, t, layer, codes), x0 if self.objective == "x0" else noise)

    # -- sampling ------------------------------------------------------------
    def _predict(self, x, t, layers, codes):
        """(x0, eps) predicted at step t, with x0 clipped to +-X0_CLIP standardised units.

        Objective eps: near t = T the cosine schedule has alpha_bar ~ 1e-6, where
        x0 = (x - sqrt(1 - ab) eps) / sqrt(ab) amplifies any error in eps a
        thousandfold; clipping x0 to the range real standardised latents occupy
        (what image diffusion does with [-1, 1]) and re-deriving eps keeps
        samples finite. Objective x0: the network's output is x0 (clipped alike).
        """
        out = self.denoiser(x, t, layers, codes)
        ab = self.alphas_cumprod[t][:, None]
        x0 = out if self.objective == "x0" else (x - (1 - ab).sqrt() * out) / ab.sqrt()
        x0 = x0.clamp(-X0_CLIP, X0_CLIP)
        return x0, (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    @torch.no_grad()
    def sample_layer(self, layer: int, codes: torch.Tensor, generator: torch.Generator,
                     sampler: str = "ddim", steps: int = 100) -> torch.Tensor:
        """One reverse process: a draw from p(part l | c^l) in standardised units, (N, part_dim)."""
        n, device = codes.shape[0], codes.device
        x = torch.randn(n, self.part_dim, generator=generator).to(device)
        layers = torch.full((n,), layer, dtype=torch.long, device=device)
        if sampler == "ddpm":
            for t in range(self.timesteps - 1, -1, -1):
                tt = torch.full((n,), t, dtype=torch.long, device=device)
                x0, _ = self._predict(x, tt, layers, codes)
                mean = self.posterior_c0[t] * x0 + self.posterior_ct[t] * x
                noise = torch.randn(x.shape, generator=generator).to(device)
                x = mean + (self.posterior_var[t].sqrt() * noise if t > 0 else 0)
            return x
        if sampler != "ddim":
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        if steps < 1:                              # no step would return the starting noise as a draw
            raise ValueError(f"DDIM steps must be >= 1, got {steps}")
        ts = torch.linspace(self.timesteps - 1, 0, steps).round().long().unique_consecutive()
        for i, t in enumerate(ts.tolist()):
            tt = torch.full((n,), t, dtype=torch.long, device=device)
            x0, eps = self._predict(x, tt, layers, codes)
            ab_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=device)
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, prefix: torch.Tensor | None = None, stop: int | None = None,
               sampler: str = "ddim", steps: int = 100) -> torch.Tensor:
        """The chain h^1 -> h^L in raw latent units, (n, L, H) on the CPU (computed on the model's device).

        `prefix` (n, k, H) fixes h^1..h^k; layers k..stop-1 are drawn in turn,
        each conditioned on the code of everything before it; layers from
        `stop` on are left at the mean (zero in standardised units).
        """
        stop = self.layers if stop is None else stop
        device = self.betas.device
        z = torch.zeros(n, self.layers, self.latent_dim, device=device)
        k = 0 if prefix is None else prefix.shape[1]
        if self.variant == "flat" and (k > 0 or stop != self.layers):
            raise ValueError("the flat baseline has no layer chain: it cannot fix or stop at a layer")
        if prefix is not None:
            if prefix.shape[0] != n or not 0 <= k <= self.layers:
                raise ValueError(f"prefix must be ({n}, k<={self.layers}, {self.latent_dim}), got {tuple(prefix.shape)}")
            z[:, :k] = (prefix.float().to(device) - self.mean[:k]) / self.std[:k]
        parts = self._parts(z)                          # a view: writes land in z
        for l in range(k, stop if self.variant != "flat" else 1):
            codes = self.condition_codes(parts)[:, l]
            parts[:, l] = self.sample_layer(l, codes, generator, sampler, steps)
        return self.unstandardise(z).cpu()


class HCDMTrainer:
    """Adam W training of the HCDM with an EMA copy used for sampling."""

    def __init__(self, model: HCDM, cfg: HCDMConfig):
        self.model, self.cfg = model, cfg
        self.ema = copy.deepcopy(model).requires_grad_(False)
        # The sampling copy averages the denoiser but takes the live compressor W: a code is the sign pattern
        # of W v, and an averaged W gives codes no training step saw (the default's final EMA W flipped 1% of
        # the train latents' bits, 14% of the codes of h^2..h^5). With the live W, FID@500 49.30 against
        # 49.46, std_12 0.402 against 0.407: within the seeds' spread, and the codes are the trained ones.
        live = {id(p) for p in model.compressor.parameters()}
        pairs = list(zip(self.ema.parameters(), model.parameters()))
        self.averaged = [pair for pair in pairs if id(pair[1]) not in live]
        self.copied = [pair for pair in pairs if id(pair[1]) in live]

    @torch.no_grad()
    def update_ema(self) -> None:
        torch._foreach_lerp_([e for e, _ in self.averaged], [p for _, p in self.averaged], 1 - self.cfg.ema_decay)
        for e, p in self.copied:
            e.copy_(p)

    def optimizer(self) -> torch.optim.AdamW:
        """AdamW over the model, fused: one kernel over every tensor (2 CPU cores: 1.1 ms a step against 3.5 ms
        for the per-tensor loop at the default's 0.62 M parameters; the same update up to float rounding)."""
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                                 fused=True)

    def batch_loss(self, latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One training step's loss, in fp32: the denoising loss of a batch drawn from the raw train latents
        (N, L, H).

        bf16: the forward under autocast, fp32 weights and optimiser. On the default (2 CPU cores with
        AVX512-BF16) 4000 steps took 132 s against 218 s in fp32; held-out denoising loss of the EMA
        model 0.0927 against 0.0953 (test latents, 20 draws of t and noise), train loss 0.0915 / 0.0914."""
        c = self.cfg
        idx = torch.randint(len(latents), (min(c.batch_size, len(latents)),), generator=generator)
        with torch.autocast(latents.device.type, dtype=torch.bfloat16, enabled=c.precision == "bf16"):
            loss = self.model.loss(latents[idx.to(latents.device)], generator)
        return loss.float()

    def fit(self, latents: torch.Tensor, checkpointer: Checkpointer, log: StepLog, generator: torch.Generator,
            progress: bool = True) -> None:
        c = self.cfg
        latents = latents.to(self.model.betas.device)
        self.model.set_statistics(latents)
        self.ema.load_state_dict(self.model.state_dict())
        params = list(self.model.parameters())
        optimizer = self.optimizer()
        scheduler = warmup_cosine(optimizer, c.warmup_steps, c.steps)
        self.model.train()

        def step(_: int):
            return self.batch_loss(latents, generator), {}

        train_loop(step, {"model": self.model, "ema": self.ema}, params, optimizer, scheduler, c.steps,
                   c.grad_clip, c.log_every, checkpointer, log, generator, "train_hcdm",
                   after_step=self.update_ema, progress=progress,
                   guard=DivergenceGuard("train_hcdm", "hcdm.lr or raise hcdm.warmup_steps"))
        self.model.eval()
        self.ema.eval()


# What a model saved before `denoiser`, `objective` and `compressor` existed was.
LEGACY_ARCH = {"denoiser": "mlp", "objective": "eps", "compressor": "learned"}


def build_hcdm(cfg, latents=None) -> HCDM:
    """The untrained HCDM a validated run config (`pipeline.config.Config`) describes; `latents` (N, L, H), the
    bank it will learn, must hold the config's L layers of H (one line naming the file if not: loe.* edited
    and train_hcdm run alone, without export_latents)."""
    h = cfg.hcdm
    if latents is not None and tuple(latents.shape[1:]) != (cfg.loe.layers, cfg.loe.latent_dim):
        raise DataError(f"{artifacts.LATENTS}: holds {latents.shape[1]} layers of {latents.shape[2]} latents, and "
                        f"params.yaml's loe.layers and loe.latent_dim say {cfg.loe.layers} of {cfg.loe.latent_dim}: "
                        "the bank is of another Stage-1 (`dvc repro` refits it)")
    return HCDM(cfg.loe.layers, cfg.loe.latent_dim, cfg.binary_len, h.variant, h.hidden, h.blocks, h.timesteps,
                h.schedule, h.dropout, h.denoiser, h.objective, h.compressor)


def save_hcdm(path: Path, model: HCDM) -> None:
    io.save_torch(path, {"arch": model.arch, "model": model.state_dict()})


def load_hcdm(path: Path = artifacts.HCDM_MODEL) -> HCDM:
    """The EMA weights of the trained HCDM, ready to sample."""
    state = io.load_torch(artifacts.require(path, "train_hcdm"))
    io.check_finite_state(path, state, reading=True)
    model = io.load_module(path, "a Stage-2 model", lambda: HCDM(**{**LEGACY_ARCH, **state["arch"]}),
                           lambda: (state["model"],), settings=lambda: state["arch"])
    return model.eval()
