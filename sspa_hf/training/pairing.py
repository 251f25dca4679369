"""Paired Augmentation Module (paper Section 3.3, Eq. 5-8, Algorithm 2).

Each noisy sample of a batch is replaced by a Mixup of itself with a clean partner, labelled as the partner;
partners are drawn per class so that the batch's class histogram h + s is as flat as possible (Eq. 8).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

ALLOCATIONS = ("exact", "slsqp")


def allocate(h: np.ndarray | list[int], n_noisy: int, *, method: str = "exact") -> np.ndarray:
    """Eq. 8: integer s minimising Var(h + s) s.t. 0 <= s_i <= N_N, s_i = 0 where h_i = 0, sum(s) = N_N.

    `h` is (C,): the batch's clean samples per class; `n_noisy` its noisy count N_N. Returns s, (C,) int64.

    "exact" is integer water-filling: it raises the lowest classes first, and among classes at the same level
    the lower class index gets a unit first. It is optimal because the objective is separable and convex (each
    unit's marginal cost 2(h_i + s_i) + 1 grows with s_i), so the greedy choice of the cheapest unit is optimal.
    "slsqp" is the paper's route: scipy's SLSQP on the relaxed problem, then floor plus largest remainder.
    """
    h = np.asarray(h, dtype=np.int64)
    if h.ndim != 1 or np.any(h < 0):
        raise ValueError(f"allocate: h must be a 1-D histogram of non-negative counts, got {h.tolist()}")
    if n_noisy < 0:
        raise ValueError(f"allocate: n_noisy must be >= 0, got {n_noisy}")
    if n_noisy == 0:
        return np.zeros_like(h)
    eligible = h > 0
    if not eligible.any():
        raise ValueError(f"allocate: no clean sample to pair {n_noisy} noisy samples with (h is all zero)")
    if method == "exact":
        return _water_fill(h, n_noisy, eligible)
    if method == "slsqp":
        return _slsqp(h, n_noisy, eligible)
    raise ValueError(f"allocate: unknown method {method!r}; expected one of {ALLOCATIONS}")


def _water_fill(h: np.ndarray, n_noisy: int, eligible: np.ndarray) -> np.ndarray:
    levels = np.sort(h[eligible])
    # Highest integer level L with sum(max(0, L - h_i)) <= n_noisy, found over the sorted eligible counts.
    level, filled = int(levels[0]), 0
    for count, next_level in enumerate(np.append(levels[1:], np.iinfo(np.int64).max), start=1):
        step = min(int(next_level) - level, (n_noisy - filled) // count)
        level, filled = level + step, filled + step * count
        if int(next_level) > level:
            break
    s = np.where(eligible, np.maximum(level - h, 0), 0)
    at_level = np.flatnonzero(eligible & (h + s == level))
    s[at_level[: n_noisy - int(s.sum())]] += 1  # the remainder, lowest class index first
    return s


def _slsqp(h: np.ndarray, n_noisy: int, eligible: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    hf = h.astype(np.float64)
    x0 = np.where(eligible, n_noisy / eligible.sum(), 0.0)
    bounds = [(0.0, float(n_noisy)) if ok else (0.0, 0.0) for ok in eligible]
    result = minimize(
        lambda s: np.var(hf + s),
        x0,
        jac=lambda s: 2.0 * (hf + s - np.mean(hf + s)) / len(s),
        bounds=bounds,
        constraints=[{"type": "eq", "fun": lambda s: s.sum() - n_noisy, "jac": lambda s: np.ones_like(s)}],
        method="SLSQP",
        # A tight tolerance so that rounding never starts from a point short of the optimum (docs/method.md).
        options={"ftol": 1e-12, "maxiter": 500},
    )
    x = np.clip(np.where(eligible, result.x, 0.0), 0.0, n_noisy)
    s = np.floor(x + 1e-9).astype(np.int64)
    remainder = n_noisy - int(s.sum())
    if remainder > 0:  # largest remainder; ties to the lower class index
        order = np.lexsort((np.arange(len(x)), -(x - s)))
        s[[i for i in order if eligible[i]][:remainder]] += 1
    elif remainder < 0:  # rounding overshoot: take back from the largest fractional losses
        order = np.lexsort((np.arange(len(x)), x - s))
        s[[i for i in order if s[i] > 0][:-remainder]] -= 1
    return s


def allocate_across(h: np.ndarray, n_noisy: np.ndarray) -> np.ndarray:
    """Eq. 8 on the global batch of P processes, each drawing partners from its own clean samples.

    `h` is (P, C): each process's clean histogram; `n_noisy` (P,): its noisy count. Returns s (P, C) with
    sum_c s[p] = n_noisy[p], s[p, c] = 0 where h[p, c] = 0, and Var(sum_p h + sum_p s) minimal under those
    constraints. A process without clean samples has nothing to pair with: its row is zero (its noisy samples
    get loss weight 0, as in `pair_and_mix`). With P = 1 the result is `allocate(h[0], n_noisy[0])`.

    This is a min-cost flow with a separable convex cost on the class totals, solved by successive shortest
    paths one unit at a time: each unit goes to the lowest reachable class total (lowest index on ties), where
    a class is reachable from a process that still has noisy samples either directly (it has clean samples of
    that class) or by moving another process's unit to a different class along an alternating path. This is
    optimal, and when the unconstrained `allocate` of the summed histogram can be split over the processes it
    reaches the same variance.
    """
    h, n_noisy = np.asarray(h, dtype=np.int64), np.asarray(n_noisy, dtype=np.int64)
    if h.ndim != 2 or n_noisy.shape != (h.shape[0],) or np.any(h < 0) or np.any(n_noisy < 0):
        raise ValueError(f"allocate_across: need h (P, C) and n_noisy (P,) of non-negative counts, got {h.shape}")
    processes = h.shape[0]
    supply = np.where(h.sum(axis=1) > 0, n_noisy, 0)
    s = np.zeros_like(h)
    level = h.sum(axis=0)
    for _ in range(int(supply.sum())):
        # Breadth-first search: reached[c] = the process a unit of class c would come from; via[q] = the class
        # process q gives one unit up from to make room.
        sources = [p for p in range(processes) if supply[p] > 0]
        reached: dict[int, int] = {}
        via: dict[int, int] = {}
        queue = deque(sources)
        seen = set(sources)
        while queue:
            p = queue.popleft()
            for c in np.flatnonzero(h[p] > 0):
                c = int(c)
                if c in reached:
                    continue
                reached[c] = p
                for q in np.flatnonzero(s[:, c] > 0):
                    if int(q) not in seen:
                        seen.add(int(q))
                        via[int(q)] = c
                        queue.append(int(q))
        c = min(reached, key=lambda i: (level[i], i))  # the cheapest unit: Eq. 8's marginal cost grows with level
        level[c] += 1
        while True:  # shift one unit along the path back to a process with noisy samples left
            p = reached[c]
            s[p, c] += 1
            if p not in via:
                supply[p] -= 1
                break
            c = via[p]
            s[p, c] -= 1
    return s


@dataclass
class PairedBatch:
    """A batch after PAM: noisy samples replaced by mixtures, and what was created per class (s)."""

    pixel_values: torch.Tensor
    labels: torch.Tensor
    loss_weight: torch.Tensor  # 1 for every sample that enters the loss
    created: np.ndarray  # s: mixtures created per class


def pair_and_mix(
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    clean: torch.Tensor,
    *,
    rng: np.random.Generator,
    alpha: float = 5.0,
    beta: float = 1.0,
    num_classes: int = 7,
    method: str = "exact",
    allocation: np.ndarray | None = None,
) -> PairedBatch:
    """Algorithm 2: replace each noisy x_N by lambda * x_S + (1 - lambda) * x_N with label y_S (Eq. 5-7).

    `pixel_values` is (B, ...), `labels` (B,) int, `clean` (B,) bool; `allocation`, when given, (C,) int.

    Partners are drawn with replacement, s_i of them from the clean samples of class i (Eq. 8), and paired with
    the noisy samples at random. A batch without noisy samples is returned unchanged; one without clean samples
    has nothing to pair with, so its loss weight is all zero. `allocation` is s decided elsewhere (this process's
    row of `allocate_across`); by default Eq. 8 is solved on this batch alone.
    """
    clean_np = clean.detach().cpu().numpy().astype(bool)
    labels_np = labels.detach().cpu().numpy()
    clean_idx, noisy_idx = np.flatnonzero(clean_np), np.flatnonzero(~clean_np)
    created = np.zeros(num_classes, dtype=np.int64)
    if len(noisy_idx) == 0 or len(clean_idx) == 0:
        return PairedBatch(pixel_values, labels, clean.to(pixel_values.dtype), created)
    h = np.bincount(labels_np[clean_idx], minlength=num_classes)
    if allocation is None:
        s = allocate(h, len(noisy_idx), method=method)
    else:
        s = np.asarray(allocation, dtype=np.int64)
        if s.sum() != len(noisy_idx) or np.any(s[h == 0] != 0):
            raise ValueError(
                f"pair_and_mix: allocation {s.tolist()} does not fit h {h.tolist()}, {len(noisy_idx)} noisy"
            )
    partners = np.concatenate(
        [rng.choice(clean_idx[labels_np[clean_idx] == c], size=int(s[c]), replace=True) for c in np.flatnonzero(s)]
    )
    partners = rng.permutation(partners)  # random pairing with the noisy samples
    lam = torch.as_tensor(rng.beta(alpha, beta, size=len(noisy_idx)), dtype=pixel_values.dtype)  # Eq. 5
    lam = lam.to(pixel_values.device).view(-1, *([1] * (pixel_values.dim() - 1)))
    noisy_t = torch.as_tensor(noisy_idx, device=pixel_values.device)
    partners_t = torch.as_tensor(partners, device=pixel_values.device)
    mixed = pixel_values.clone()
    mixed[noisy_t] = lam * pixel_values[partners_t] + (1 - lam) * pixel_values[noisy_t]  # Eq. 6
    new_labels = labels.clone()
    new_labels[noisy_t] = labels[partners_t]  # Eq. 7
    return PairedBatch(mixed, new_labels, torch.ones_like(labels, dtype=pixel_values.dtype), s)


@dataclass(frozen=True)
class PairedMixup:
    """PAM configured once and applied as a call, as timm's `Mixup`: `mixup(pixels, labels, clean, rng=rng)`.

    `alpha`, `beta`: lambda ~ Beta(alpha, beta) (Eq. 5); `method`: the Eq. 8 solver. The generator (and, with
    several processes, this process's share of a global allocation) come with each call: they depend on the step.
    """

    num_classes: int
    alpha: float = 5.0
    beta: float = 1.0
    method: str = "exact"

    def __call__(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        clean: torch.Tensor,
        *,
        rng: np.random.Generator,
        allocation: np.ndarray | None = None,
    ) -> PairedBatch:
        return pair_and_mix(
            pixel_values,
            labels,
            clean,
            rng=rng,
            alpha=self.alpha,
            beta=self.beta,
            num_classes=self.num_classes,
            method=self.method,
            allocation=allocation,
        )
