"""Layers-of-Experts SIREN (paper eq. 3).

Layer l holds K expert weight matrices and biases shared across the dataset.
An instance's latent h^l picks their mixture through the gating module
alpha^l = g(h^l), and the mixed layer is applied with a sine activation:

    y^{l+1} = sin(w0 * (sum_k alpha^l_k W^l_k y^l + sum_k alpha^l_k b^l_k))

The last layer is linear (SIREN's output convention), so the network maps
d_in coordinates to d_out values with no knowledge of the modality.

`variant` gives the Table-1 baselines the same interface, latent shape (L, H)
and training code, their latent read as one vector h = flat(h^1..h^L):

- `chinr`: the gate of layer l reads h^l only (the paper's per-layer latents);
- `mnif`: the gate of every layer reads the whole h (mNIF's LinearMixtureINR:
  shared experts, one latent linearly mapped to every layer's coefficients);
- `functa`: one weight matrix per layer (no experts) whose hidden layers get a
  shift s^l = M^l h + m^l inside the sine (Functa's LatentModulatedSiren with a
  linear latent-to-modulation map): y^{l+1} = sin(w0 (W^l y^l + b^l + s^l)).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .batching import render_in_batches

GATE_INIT_SCALE = 0.1
VARIANTS = ("chinr", "mnif", "functa")


class SinCos(torch.autograd.Function):
    """(sin z, cos z) with a backward that reuses them: g_sin * cos z - g_cos * sin z.

    The inner loop's forward needs both (sin for the next layer, cos for the hand-written gradient);
    as two autograd nodes the outer backward recomputed each (cos for sin's derivative, sin for
    cos's): 21 of a default step's 49 full-size trigonometric calls. The values are the same
    bits as torch.sin / torch.cos and their derivatives (a test checks it)."""

    @staticmethod
    def forward(ctx, z):
        s, c = torch.sin(z), torch.cos(z)
        ctx.save_for_backward(s, c)
        return s, c

    @staticmethod
    def backward(ctx, g_sin, g_cos):
        s, c = ctx.saved_tensors
        if g_cos is None:
            return g_sin * c
        if g_sin is None:
            return -(g_cos * s)
        return g_sin * c - g_cos * s


class LayersOfExperts(nn.Module):
    # How a hidden layer and the inner gradient through it run: "torch" (eager ops) or "triton" (the fused
    # kernels of loe_triton.py: matmul with its sin/cos or product epilogue). Set by Stage-1 from
    # fit_loe.kernel; not part of the saved model (the same function up to float rounding).
    kernel = "torch"

    def __init__(self, d_in: int, d_out: int, layers: int, experts: int, width: int, latent_dim: int, w0: float,
                 variant: str = "chinr"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        if variant == "functa":
            experts = 1                 # one plain SIREN layer: its one "expert" weighted 1
        self.d_in, self.d_out = d_in, d_out
        self.layers, self.experts, self.width, self.latent_dim, self.w0 = layers, experts, width, latent_dim, w0
        dims = [d_in] + [width] * (layers - 1) + [d_out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for l, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
            # SIREN init of each expert: U(-1/n, 1/n) first, U(-sqrt(6/n)/w0, sqrt(6/n)/w0) after.
            bound = 1 / n_in if l == 0 else math.sqrt(6 / n_in) / w0
            self.weights.append(nn.Parameter(torch.empty(experts, n_out, n_in).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(experts, n_out).uniform_(-bound, bound)))
        # g(h^l): one linear gate per layer. Its bias starts at 1/sqrt(K): a sum of K
        # i.i.d. experts weighted 1/sqrt(K) has the variance of one expert, so the
        # mixture at h = 0 keeps SIREN's initial statistics (1/K, as in mNIF, would
        # shrink it by sqrt(K) and slow training). Its weight starts 10x smaller
        # than PyTorch's default: with the default, second-order meta-learning
        # diverged within 40 steps (the inner steps overshoot once the outer loop
        # sharpens the network); small gates start gentle and the Meta-SGD rates
        # learn the step size instead (measured: 23.8 dB after 200 steps, stable).
        # mnif reads the whole latent (L*H values) at every layer: the same small start per input.
        gate_in = latent_dim * layers if variant == "mnif" else latent_dim
        self.gates = nn.ModuleList(nn.Linear(gate_in, experts) for _ in range(layers if variant != "functa" else 0))
        for gate in self.gates:
            bound = GATE_INIT_SCALE / math.sqrt(gate_in)
            nn.init.uniform_(gate.weight, -bound, bound)
            nn.init.constant_(gate.bias, 1 / math.sqrt(experts))
        # functa: the latent-to-shift maps of the hidden layers, started like the gates (small weights)
        # and with a zero bias, so a zero latent is the base SIREN exactly.
        self.shifts = nn.ModuleList(nn.Linear(latent_dim * layers, width) for _ in range(layers - 1)) \
            if variant == "functa" else nn.ModuleList()
        for shift in self.shifts:
            bound = GATE_INIT_SCALE / math.sqrt(latent_dim * layers)
            nn.init.uniform_(shift.weight, -bound, bound)
            nn.init.zeros_(shift.bias)

    @property
    def per_layer_latents(self) -> bool:
        """Whether h^l belongs to layer l alone (the layer-wise control the paper is about)."""
        return self.variant == "chinr"

    def expert_lr_scale(self) -> float:
        """What the experts' learning rate is multiplied by, so the mixed layer learns at the base rate.

        Under Adam every parameter moves by about lr per step whatever its
        gradient's size. At initialisation all K gates equal 1/sqrt(K), so the K
        experts of a layer get the same gradient and move in lockstep: the
        mixed weight sum_k alpha_k W_k then moves by K * lr / sqrt(K) = sqrt(K) lr
        per step, sqrt(384) = 19.6 times a plain SIREN's at the CelebA preset's
        K (measured: 10.4x lr at K = 384, 5.6x at K = 64, 0.95x at K = 1). That
        was why the preset diverged at the paper's lr 1e-4: its mixed weights
        stepped like a SIREN's at 1e-3 to 2e-3 (grad norm 2.8 at step 20, 34 at
        50, 2230 at 60, 1.6e6 at 100, 64x64 faces, batch 8).
        Scaling the experts' rate by 1/sqrt(K) gives the mixed weight a plain
        SIREN's step at every K (measured 0.95x lr at K = 1, 16, 64, 384), so
        `fit_loe.lr` means the same thing at every preset size.
        """
        return 1 / math.sqrt(self.experts)

    def param_groups(self, lr: float) -> list[dict]:
        """AdamW groups: the gates at lr, the experts at lr * expert_lr_scale()."""
        return [{"params": [*self.gates.parameters(), *self.shifts.parameters()], "lr": lr},
                {"params": [*self.weights, *self.biases], "lr": lr * self.expert_lr_scale()}]

    def gating(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """(B, L, H) latents -> L gating vectors alpha^l of shape (B, K) (functa: ones, K = 1)."""
        if self.variant == "functa":
            return [latents.new_ones(latents.shape[0], 1)] * self.layers
        if self.variant == "mnif":
            flat = latents.flatten(1)
            return [gate(flat) for gate in self.gates]
        return [gate(latents[:, l]) for l, gate in enumerate(self.gates)]

    def shift(self, latents: torch.Tensor, l: int) -> torch.Tensor | None:
        """functa: the shift s^l (B, width) of hidden layer l; None for the other variants and the last layer."""
        return self.shifts[l](latents.flatten(1)) if l < len(self.shifts) else None

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """coords (P, d_in) shared or (B, P, d_in); latents (B, L, H) -> values (B, P, d_out)."""
        return self._run(coords, latents, None)

    def _run(self, coords: torch.Tensor, latents: torch.Tensor, saved: list | None) -> torch.Tensor:
        """The forward pass; with a list `saved`, each layer's (input, mixed weight, cos of pre-activation)."""
        if latents.shape[1:] != (self.layers, self.latent_dim):
            raise ValueError(f"latents must be (B, {self.layers}, {self.latent_dim}), got {tuple(latents.shape)}")
        batch = latents.shape[0]
        y = coords.expand(batch, *coords.shape) if coords.dim() == 2 else coords
        last = self.layers - 1
        for l, alpha in enumerate(self.gating(latents)):
            # w0 is folded into the small (B, K) gate output rather than applied to the
            # (B, P, out) pre-activations: one fewer full-size tensor per layer in the
            # forward pass and in both backward passes of the meta-learning step.
            a = alpha * self.w0 if l < last else alpha
            w = (a @ self.weights[l].flatten(1)).view(batch, *self.weights[l].shape[1:])   # (B, out, in)
            b = a @ self.biases[l]                                                           # (B, out)
            shift = self.shift(latents, l)
            if shift is not None:
                b = b + self.w0 * shift          # inside the sine: w0 (W y + b + s), as a is w0 here
            if l < last and (saved is not None or self.kernel == "triton"):   # sin, and cos for the gradient
                y_in = y
                if self.kernel == "triton":
                    from .loe_triton import linear_sincos

                    y, cos = linear_sincos(y, w, b)                                         # (B, P, out) each
                else:
                    y, cos = SinCos.apply(torch.baddbmm(b[:, None, :], y, w.transpose(1, 2)))
                if saved is not None:
                    saved.append((y_in, w, cos))
                continue
            z = torch.baddbmm(b[:, None, :], y, w.transpose(1, 2))                          # (B, P, out)
            if saved is not None:
                saved.append((y, w, None))
            y = torch.sin(z) if l < last else z
        return y

    def latent_grad(self, coords: torch.Tensor, latents: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """d/dh of sum_b mean_{p,d} (f(x_p; h_b)_d - t_bpd)^2, the inner loss, by hand: (B, L, H).

        The same numbers as torch.autograd.grad of that loss (a test checks it to
        1e-12 in float64), written as plain tensor operations: the meta-learning
        step built on it is an ordinary forward graph, which autograd
        differentiates once for the outer (second-order) gradient and which
        torch.compile can trace and fuse whole, where autograd.grad with
        create_graph inside the step cannot be traced.
        """
        saved: list = []
        out = self._run(coords, latents, saved)
        g = (out - targets) * (2 / out[0].numel())                      # dLoss/dout (B, P, d_out)
        last = self.layers - 1
        grads, flat = [], 0
        for l in range(last, -1, -1):
            y, w, _ = saved[l]
            if self.variant == "functa":
                if l < last:                                               # d/ds^l = w0 sum_p g, s^l = M^l h + m^l
                    flat = flat + (g.sum(1) * self.w0) @ self.shifts[l].weight
            else:
                dw = torch.bmm(g.transpose(1, 2), y)                       # (B, out, in)
                da = dw.flatten(1) @ self.weights[l].flatten(1).T + g.sum(1) @ self.biases[l].T   # (B, K)
                if l < last:
                    da = da * self.w0
                if self.variant == "mnif":
                    flat = flat + da @ self.gates[l].weight                # (B, L*H): every gate reads all of h
                else:
                    grads.append(da @ self.gates[l].weight)                # (B, H)
            if l > 0 and self.kernel == "triton":
                from .loe_triton import matmul_mul

                g = matmul_mul(g, w, saved[l - 1][2])                      # the same, the product fused
            elif l > 0:
                g = torch.bmm(g, w) * saved[l - 1][2]                      # through layer l, then sin' of l-1
        if self.variant != "chinr":
            return flat.view(latents.shape)
        return torch.stack(grads[::-1], 1)

    def render(self, coords: torch.Tensor, latents: torch.Tensor, batch_size: int = 256,
               points_per_batch: int = 2 ** 20) -> torch.Tensor:
        """Decode many latents without gradients, in batches, on the model's device: (N, L, H) -> (N, P, d_out) on the CPU.

        coords: (P, d_in) shared by all, or (N, P, d_in) one set per instance.
        A batch holds at most `batch_size` instances and `points_per_batch` points in
        all (a 32^3 grid is 32768 points per instance: 256 of them would need GBs).
        """
        return render_in_batches(self, coords, latents, self.weights[0].device,
                                 max(1, min(batch_size, points_per_batch // coords.shape[-2])))

    def hyperparameters(self) -> dict:
        return dict(d_in=self.d_in, d_out=self.d_out, layers=self.layers, experts=self.experts,
                    width=self.width, latent_dim=self.latent_dim, w0=self.w0, variant=self.variant)
