"""Stage-2: the Hierarchical Controllable Diffusion Model (paper sec. 3.3).

p(h) = p(h^1) prod_l p(h^l | h^<l). One denoiser serves every layer; it sees
the noisy layer latent h^l_t, the step t, the layer index l and the binary
condition code c^l of the earlier layers (fig. 3):

    v^l = W . zero_pad(concat(h^1..h^{l-1}))   W: (binary_len, L*H)
    c^l = Q(sigmoid(v^l)),   c^1 = 0

Q thresholds at 1/2. W is learned jointly with the denoiser through a
straight-through estimator: the forward pass uses the hard bits, the
backward pass the sigmoid's gradient. Learning W lets the few bits keep the
information about h^<l that most helps to denoise h^l, instead of a random
projection; keeping the bits hard at training time means the model trains
on exactly the codes it will see when sampling.

Latents are standardised per dimension with train-set statistics; DDPM
training with the epsilon objective; EMA weights for sampling; DDPM
ancestral or DDIM (eta = 0) sampling.
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
from .training import Checkpointer, DivergenceGuard, StepLog, train_loop, warmup_cosine

X0_CLIP = 6.0


def beta_schedule(kind: str, timesteps: int) -> torch.Tensor:
    if kind == "linear":
        scale = 1000 / timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
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
    """h^<l -> c^l for every layer at once: (B, L, H) -> (B, L, binary_len) in {0, 1}."""

    def __init__(self, layers: int, latent_dim: int, binary_len: int):
        super().__init__()
        self.layers, self.latent_dim = layers, latent_dim
        self.weight = nn.Parameter(torch.randn(binary_len, layers * latent_dim) / math.sqrt(latent_dim))
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


class ResidualBlock(nn.Module):
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


class Denoiser(nn.Module):
    """eps_theta(h^l_t, t, l, c^l): a residual MLP with FiLM conditioning.

    The paper uses a UNet; a latent vector has no spatial order for a
    convolution's locality prior to exploit, so we use the residual MLP that
    mNIF uses for the same kind of latents, conditioned on (t, l, c^l).
    """

    def __init__(self, latent_dim: int, layers: int, binary_len: int, hidden: int, blocks: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(latent_dim, hidden)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.layer = nn.Embedding(layers, hidden)
        self.code = nn.Linear(binary_len, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, dropout) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, latent_dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x, t, layer, code):
        emb = F.silu(self.time(timestep_embedding(t, self.hidden)) + self.layer(layer) + self.code(code))
        y = self.inp(x)
        for block in self.blocks:
            y = block(y, emb)
        return self.out(y)


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
                 dropout: float = 0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.layers, self.latent_dim, self.binary_len = layers, latent_dim, binary_len
        self.variant, self.timesteps = variant, timesteps
        # The diffusion chain runs over `parts` parts of `part_dim` values each.
        self.parts, self.part_dim = (1, layers * latent_dim) if variant == "flat" else (layers, latent_dim)
        self.arch = dict(layers=layers, latent_dim=latent_dim, binary_len=binary_len, variant=variant,
                         hidden=hidden, blocks=blocks, timesteps=timesteps, schedule=schedule, dropout=dropout)
        self.compressor = ConditionCompressor(self.parts, self.part_dim, binary_len)
        self.denoiser = Denoiser(self.part_dim, self.parts, binary_len, hidden, blocks, dropout)
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
        """Epsilon-prediction loss over every layer of a batch of raw latents (B, L, H)."""
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
        return F.mse_loss(self.denoiser(xt, t, layer, codes), noise)

    # -- sampling ------------------------------------------------------------
    def _predict(self, x, t, layers, codes):
        """(x0, eps) predicted at step t, with x0 clipped to +-X0_CLIP standardised units.

        Near t = T the cosine schedule has alpha_bar ~ 1e-6, where x0 = (x -
        sqrt(1 - ab) eps) / sqrt(ab) amplifies any error in eps a thousandfold;
        clipping x0 to the range real standardised latents occupy (what image
        diffusion does with [-1, 1]) and re-deriving eps keeps samples finite.
        """
        eps = self.denoiser(x, t, layers, codes)
        ab = self.alphas_cumprod[t][:, None]
        x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-X0_CLIP, X0_CLIP)
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

    @torch.no_grad()
    def update_ema(self) -> None:
        d = self.cfg.ema_decay
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p, 1 - d)

    def fit(self, latents: torch.Tensor, checkpointer: Checkpointer, log: StepLog, generator: torch.Generator,
            progress: bool = True) -> None:
        c = self.cfg
        latents = latents.to(self.model.betas.device)
        self.model.set_statistics(latents)
        self.ema.load_state_dict(self.model.state_dict())
        params = list(self.model.parameters())
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        scheduler = warmup_cosine(optimizer, c.warmup_steps, c.steps)
        self.model.train()

        # bf16: the forward under autocast, fp32 weights and optimiser. On the default (2 CPU cores with
        # AVX512-BF16) 4000 steps took 132 s against 218 s in fp32; held-out denoising loss of the EMA
        # model 0.0927 against 0.0953 (test latents, 20 draws of t and noise), train loss 0.0915 / 0.0914.
        autocast = torch.autocast(latents.device.type, dtype=torch.bfloat16, enabled=c.precision == "bf16")

        def step(_: int):
            idx = torch.randint(len(latents), (min(c.batch_size, len(latents)),), generator=generator)
            with autocast:
                loss = self.model.loss(latents[idx.to(latents.device)], generator)
            return loss.float(), {}

        train_loop(step, {"model": self.model, "ema": self.ema}, params, optimizer, scheduler, c.steps,
                   c.grad_clip, c.log_every, checkpointer, log, generator, "train_hcdm",
                   after_step=self.update_ema, progress=progress,
                   guard=DivergenceGuard("train_hcdm", "hcdm.lr or raise hcdm.warmup_steps"))
        self.model.eval()
        self.ema.eval()


def save_hcdm(path: Path, model: HCDM) -> None:
    io.save_torch(path, {"arch": model.arch, "model": model.state_dict()})


def load_hcdm(path: Path = artifacts.HCDM_MODEL) -> HCDM:
    """The EMA weights of the trained HCDM, ready to sample."""
    state = io.load_torch(artifacts.require(path, "train_hcdm"))
    io.check_finite_state(path, state, reading=True)
    model = HCDM(**state["arch"])
    model.load_state_dict(state["model"])
    return model.eval()
