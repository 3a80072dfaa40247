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
[E, H, I] holds E matrices. We view them as [E * chunks, A, B] and run Newton-Schulz batched over the leading dim
(each matrix normalised by its own Frobenius norm), which is what K2's "each weight W in R^{n x m}" asks for.
`orthogonalize_stacks` pools every stack whose matrices have the same shape once oriented wide (the down
projections [H, I] are the transposes of the gate/up matrices [I, H]), so all expert matrices of a step go through
one batched matmul chain. On accelerators that replaces E * chunks * layers chains of small kernels by one. On a
CPU the batch is cut into cache-sized blocks instead: there the per-matrix loop already runs the matmuls at
70-95% of a large sgemm's rate (measured by `agentrl bench optim`, see docs/optim.md), so batching can only save
per-call overhead, and one huge batch spills the caches and is slower than the loop.

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
# Elements per batched Newton-Schulz call (`orthogonalize_stacks`). CPU: a block whose X, Gram and polynomial
# stay cache-resident. k2-tiny's 144 [96, 128] expert matrices at 1 thread: blocks of 2^15-2^18 elements run
# within noise of the per-matrix loop (0.9-1.1x), all 144 in one batch 0.6-0.8x (it spills the caches).
# Accelerators: large enough that a whole step's expert matrices of a small model go in one call, small enough to
# bound the workspace (2^28 elements = 1 GiB in fp32 per operand).
NS_BLOCK_ELEMENTS_CPU = 1 << 17
NS_BLOCK_ELEMENTS_ACCEL = 1 << 28


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
    if grad.ndim == 2:
        x = grad.to(dtype, copy=True)  # a copy: the 2-D path normalises in place
        x_AB = x.T if tall else x
        x_AB.div_(x_AB.norm().clamp(min=eps))
        for _ in range(steps):
            gram = x_AB @ x_AB.T
            poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            x_AB = torch.addmm(x_AB, poly, x_AB, beta=a)
        return x_AB.T if tall else x_AB
    x = grad.to(dtype)
    ortho_NAB = _newton_schulz_wide(x.mT if tall else x, coefficients, steps, eps)
    return ortho_NAB.mT if tall else ortho_NAB


def is_dtensor(tensor: Tensor) -> bool:
    """True for a `torch.distributed.tensor.DTensor` (an FSDP2-sharded parameter, gradient or optimizer state)."""
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _newton_schulz_wide(
    x_NAB: Tensor,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    out: Tensor | None = None,
) -> Tensor:
    """The batched iteration on wide matrices (A <= B) already in the working dtype; the last matmul writes `out`."""
    a, b, c = coefficients
    # The working copy, contiguous even when x_NAB is a transposed view (bmm is slow on transposed strides).
    norm = x_NAB.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    if is_dtensor(x_NAB):  # FSDP2 shards: DTensor ops only (a plain `out` buffer cannot mix with them)
        x_NAB = x_NAB / norm
    else:
        x_NAB = torch.div(x_NAB, norm, out=torch.empty(x_NAB.shape, dtype=x_NAB.dtype, device=x_NAB.device))
    for step in range(steps):
        gram = x_NAB @ x_NAB.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        last = step == steps - 1 and out is not None
        x_NAB = (
            torch.baddbmm(x_NAB, poly, x_NAB, beta=a, out=out)
            if last
            else torch.baddbmm(x_NAB, poly, x_NAB, beta=a)
        )
    if out is not None and steps == 0:
        return out.copy_(x_NAB)
    return x_NAB


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


def ns_block_elements(device: torch.device) -> int:
    """Elements per batched Newton-Schulz call on `device` (see NS_BLOCK_ELEMENTS_CPU / _ACCEL)."""
    return NS_BLOCK_ELEMENTS_CPU if device.type == "cpu" else NS_BLOCK_ELEMENTS_ACCEL


def _plan_blocks(sizes: list[int], per_block: int) -> list[list[tuple[int, int, int]]]:
    """Blocks of (stack, start, stop) ranges with at most `per_block` matrices each.

    A stack larger than a block is split into near-equal blocks of its own (views, no copy); smaller stacks are
    packed whole into shared blocks (one concatenation per block) while they fit.
    """
    blocks: list[list[tuple[int, int, int]]] = []
    shared: list[tuple[int, int, int]] = []
    filled = 0
    for index, size in enumerate(sizes):
        if size >= per_block:
            pieces = -(-size // per_block)
            bounds = [size * k // pieces for k in range(pieces + 1)]
            blocks.extend([[(index, lo, hi)] for lo, hi in zip(bounds, bounds[1:], strict=False)])
            continue
        if filled + size > per_block:
            blocks.append(shared)
            shared, filled = [], 0
        shared.append((index, 0, size))
        filled += size
    if shared:
        blocks.append(shared)
    return blocks


def orthogonalize_stacks(
    stacks: list[Tensor],
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    steps: int = NS_STEPS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
    block_elements: int | None = None,
) -> list[Tensor]:
    """Newton-Schulz of every matrix in a list of [N_i, A_i, B_i] stacks, pooled into batched calls.

    Stacks are oriented wide (a tall stack is transposed, so the Gram matrix is the small one) and grouped by the
    oriented shape; each group is orthogonalised in batched calls of at most `block_elements` elements (default:
    `ns_block_elements(device)`, see `_plan_blocks`). Each matrix is normalised by its own norm, so the result
    equals `newton_schulz` on each matrix alone. Returns one [N_i, A_i, B_i] tensor (in `dtype`) per stack.
    """
    if any(stack.ndim != 3 for stack in stacks):
        raise ValueError("orthogonalize_stacks expects [N, A, B] stacks")
    if not stacks:
        return []
    if any(
        is_dtensor(stack) for stack in stacks
    ):  # FSDP2 shards: per stack in DTensor ops (pooling uses plain buffers)
        return [newton_schulz(stack, coefficients, steps, eps, dtype) for stack in stacks]
    if block_elements is None:
        block_elements = ns_block_elements(stacks[0].device)
    tall = [stack.size(-2) > stack.size(-1) for stack in stacks]
    wide = [(stack.mT if t else stack).to(dtype) for stack, t in zip(stacks, tall, strict=True)]
    results = [torch.empty(w.shape, dtype=dtype, device=w.device) for w in wide]  # contiguous, wide
    buckets: dict[tuple[int, int], list[int]] = {}
    for index, w in enumerate(wide):
        buckets.setdefault((w.size(-2), w.size(-1)), []).append(index)
    for (rows, cols), members in buckets.items():
        per_block = max(1, block_elements // (rows * cols))
        for block in _plan_blocks([wide[i].size(0) for i in members], per_block):
            if len(block) == 1:  # a view of one stack: the last matmul writes straight into its result
                pos, lo, hi = block[0]
                i = members[pos]
                _newton_schulz_wide(wide[i][lo:hi], coefficients, steps, eps, out=results[i][lo:hi])
                continue
            pooled_NAB = torch.cat([wide[members[pos]][lo:hi] for pos, lo, hi in block])
            ortho_NAB = _newton_schulz_wide(pooled_NAB, coefficients, steps, eps)
            offset = 0
            for pos, lo, hi in block:
                results[members[pos]][lo:hi].copy_(ortho_NAB[offset : offset + hi - lo])
                offset += hi - lo
    return [r.mT if t else r for r, t in zip(results, tall, strict=True)]


def muon_momentum_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_bufs: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
) -> list[Tensor]:
    """The momentum update and decoupled weight decay, in place; returns the Newton-Schulz inputs U_t."""
    torch._foreach_lerp_(momentum_bufs, grads, 1 - momentum)
    if not nesterov:
        updates = list(momentum_bufs)
    elif any(is_dtensor(g) for g in grads):
        # torch < 2.13 registers no DTensor sharding strategy for the out-of-place aten._foreach_lerp.Scalar
        # (seen with torch 2.11 + FSDP2 on CUDA); the per-tensor lerp computes the same values.
        updates = [g.lerp(m, momentum) for g, m in zip(grads, momentum_bufs, strict=True)]
    else:
        updates = torch._foreach_lerp(grads, momentum_bufs, momentum)
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    return updates


def apply_orthogonal_(param: Tensor, ortho_NAB: Tensor, lr: float) -> None:
    """W <- W - lr * 0.2 * sqrt(max(A, B)) * O, with A, B the shape of each matrix in `ortho_NAB` ([A, B] or [N, A, B])."""
    scale = rms_match_scale(ortho_NAB.size(-2), ortho_NAB.size(-1))
    param.add_(ortho_NAB.reshape(param.shape), alpha=-lr * scale)


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
    """One in-place Muon step on `params` (all 2-D, or all 3-D expert stacks split into `chunks` along dim 1).

    2-D matrices go through `newton_schulz` one by one (bitwise torch.optim.Muon); expert stacks are pooled by
    `orthogonalize_stacks`.
    """
    if not params:
        return
    updates = muon_momentum_(
        params, grads, momentum_bufs, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov
    )
    views = [matrix_view(update, chunks) for update in updates]
    stacked = [i for i, view in enumerate(views) if view.ndim == 3]
    orthos: list[Tensor] = [
        newton_schulz(view, coefficients, steps, eps, ns_dtype) if view.ndim == 2 else view for view in views
    ]
    pooled = orthogonalize_stacks([views[i] for i in stacked], coefficients, steps, eps, ns_dtype)
    for i, ortho in zip(stacked, pooled, strict=True):
        orthos[i] = ortho
    for param, ortho in zip(params, orthos, strict=True):
        apply_orthogonal_(param, ortho, lr)
