"""Muon math as pure functions (K2 Algorithm 1; k2.md §1.1-1.3).

For every matrix W of shape [A, B]:

    M_t = mu * M_{t-1} + (1 - mu) * G_t          # EMA form, as torch.optim.Muon and KellerJordan/Muon
    U_t = G_t + mu * (M_t - G_t) (Nesterov) or M_t
    O_t = NS5(U_t) * 0.2 * sqrt(max(A, B))       # "match Adam RMS" (Moonlight eq. 4)
    W_t = W_{t-1} * (1 - lr * wd) - lr * O_t     # decoupled weight decay at the *plain* lr

K2 writes the momentum as a sum (M_t = mu M_{t-1} + G_t). The EMA form differs only by the scalar (1 - mu), and
Newton-Schulz divides by the Frobenius norm first, so the orthogonalised update is the same up to eps and bf16
rounding. We use the EMA form so the 2-D path is bitwise identical to `torch.optim.Muon(adjust_lr_fn=
"match_rms_adamw")`.

Deviation: Newton-Schulz runs in bf16 as in K2/Moonlight wherever bf16 matmuls are fast (CUDA). CPUs without native
bf16 matmul run it 10-70x slower than fp32, so `ns_dtype="auto"` (see `resolve_ns_dtype`) picks fp32 on CPU.

Fused MoE experts: `experts.gate_up_proj` [E, 2I, H] holds 2E matrices of shape [I, H] and `experts.down_proj`
[E, H, I] holds E matrices. We reshape to [E * chunks, A, B] and run Newton-Schulz batched over the leading dim
(each matrix normalised by its own Frobenius norm), which is what K2's "each weight W in R^{n x m}" asks for.

Shape legend: `_AB` one matrix, `_NAB` a batch of N matrices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7
RMS_MATCH = 0.2


def newton_schulz(
    grad: Tensor,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    steps: int = NS_STEPS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Quintic Newton-Schulz orthogonalisation of a matrix [A, B] or a batch of matrices [N, A, B], in `dtype`.

    The 2-D path uses exactly the op sequence of `torch.optim._muon._zeropower_via_newtonschulz` so results match
    bitwise in bf16; the 3-D path is the same iteration with batched matmuls and a per-matrix norm.
    """
    if grad.ndim not in (2, 3):
        raise ValueError(f"newton_schulz expects a [A, B] or [N, A, B] tensor, got shape {tuple(grad.shape)}")
    a, b, c = coefficients
    tall = grad.size(-2) > grad.size(-1)
    x = grad.to(dtype, copy=True)  # a copy: the 2-D path normalises in place
    if grad.ndim == 2:
        x_AB = x.T if tall else x
        x_AB.div_(x_AB.norm().clamp(min=eps))
        for _ in range(steps):
            gram = x_AB @ x_AB.T
            poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            x_AB = torch.addmm(x_AB, poly, x_AB, beta=a)
        return x_AB.T if tall else x_AB
    x_NAB = x.mT if tall else x
    x_NAB = x_NAB / x_NAB.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x_NAB @ x_NAB.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x_NAB = torch.baddbmm(x_NAB, poly, x_NAB, beta=a)
    return x_NAB.mT if tall else x_NAB


def resolve_ns_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "bfloat16" | "float32" | "auto" (bf16 on CUDA, fp32 elsewhere) -> a torch dtype."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in ("bfloat16", "float32"):
        raise ValueError(f"ns_dtype must be 'auto', 'bfloat16' or 'float32', got {name!r}")
    return getattr(torch, name)


def rms_match_scale(rows: int, cols: int) -> float:
    """0.2 * sqrt(max(A, B)): gives the orthogonalised update an RMS of about 0.2, like AdamW (Moonlight Lemma 1)."""
    return RMS_MATCH * math.sqrt(max(rows, cols))


def matrix_view(param: Tensor, chunks: int) -> Tensor:
    """View a Muon parameter as its matrices: [A, B] stays 2-D; [E, R, B] becomes [E * chunks, R / chunks, B]."""
    if param.ndim == 2:
        if chunks != 1:
            raise ValueError(f"a 2-D Muon parameter cannot be split into {chunks} chunks")
        return param
    if param.ndim != 3:
        raise ValueError(f"Muon parameters must be 2-D or 3-D expert stacks, got shape {tuple(param.shape)}")
    experts, rows, cols = param.shape
    if rows % chunks:
        raise ValueError(
            f"expert stack of shape {tuple(param.shape)}: {rows} rows do not split into {chunks} chunks"
        )
    return param.reshape(experts * chunks, rows // chunks, cols)


def muon_step_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_bufs: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    chunks: int = 1,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    steps: int = NS_STEPS,
    eps: float = NS_EPS,
    ns_dtype: torch.dtype = torch.bfloat16,
) -> None:
    """One in-place Muon step on `params` (all 2-D, or all 3-D expert stacks split into `chunks` along dim 1)."""
    if not params:
        return
    torch._foreach_lerp_(momentum_bufs, grads, 1 - momentum)
    updates = torch._foreach_lerp(grads, momentum_bufs, momentum) if nesterov else momentum_bufs
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    for param, update in zip(params, updates, strict=True):
        update_NAB = matrix_view(update, chunks)
        ortho = newton_schulz(update_NAB, coefficients, steps, eps, ns_dtype)
        scale = rms_match_scale(update_NAB.size(-2), update_NAB.size(-1))
        param.add_(ortho.reshape(param.shape), alpha=-lr * scale)
