"""Eq. 8 solvers: time per call and agreement of `allocate(..., "exact")` and `allocate(..., "slsqp")`.

    python benchmarks/bench_allocate.py [--batches 2000] [--batch-size 128]

Batches are drawn like SSPA-JT's PA stage sees them: 128 samples with RAF-DB-like class priors, 10-60 % of them
noisy. Also counts how often SLSQP with SciPy's default tolerance (ftol 1e-6) lands on a worse variance than the
exact solution after rounding; `allocate` uses ftol 1e-12.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import scipy
from scipy.optimize import minimize

from sspa_hf.training.pairing import allocate

# RAF-DB basic training set, canonical order (anger, disgust, fear, happiness, neutral, sadness, surprise).
RAFDB_PRIORS = np.array([705, 717, 281, 4772, 2524, 1982, 1290], dtype=float) / 12271


def batches(count: int, size: int, seed: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n_noisy = int(rng.uniform(0.1, 0.6) * size)
        h = np.bincount(rng.choice(7, size=size - n_noisy, p=RAFDB_PRIORS), minlength=7)
        out.append((h, n_noisy))
    return out


def slsqp_default_tolerance(h: np.ndarray, n: int) -> np.ndarray:
    """The paper's route with SciPy's default options, floor + largest remainder."""
    eligible = h > 0
    x0 = np.where(eligible, n / eligible.sum(), 0.0)
    result = minimize(
        lambda s: np.var(h + s),
        x0,
        bounds=[(0.0, float(n)) if ok else (0.0, 0.0) for ok in eligible],
        constraints=[{"type": "eq", "fun": lambda s: s.sum() - n}],
        method="SLSQP",
    )
    x = np.clip(np.where(eligible, result.x, 0.0), 0.0, n)
    s = np.floor(x).astype(int)
    order = [i for i in np.argsort(-(x - s), kind="stable") if eligible[i]]
    s[order[: max(n - int(s.sum()), 0)]] += 1
    return s


def timed(method: str, cases: list[tuple[np.ndarray, int]]) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    results = [allocate(h, n, method=method) for h, n in cases]
    return results, (time.perf_counter() - start) / len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cases = batches(args.batches, args.batch_size, args.seed)
    exact, exact_time = timed("exact", cases)
    slsqp, slsqp_time = timed("slsqp", cases)
    default = [slsqp_default_tolerance(h, n) for h, n in cases]
    variance = [np.var(h + s) for (h, _), s in zip(cases, exact, strict=True)]
    same_variance = sum(
        np.isclose(np.var(h + s), v, atol=1e-9) for (h, _), s, v in zip(cases, slsqp, variance, strict=True)
    )
    same_allocation = sum(np.array_equal(a, b) for a, b in zip(exact, slsqp, strict=True))
    default_worse = sum(np.var(h + s) > v + 1e-9 for (h, _), s, v in zip(cases, default, variance, strict=True))
    result = {
        "machine": f"{platform.machine()} CPU, scipy {scipy.__version__}",
        "batches": args.batches,
        "batch_size": args.batch_size,
        "exact_us_per_call": round(exact_time * 1e6, 1),
        "slsqp_us_per_call": round(slsqp_time * 1e6, 1),
        "slsqp_same_variance_as_exact": f"{same_variance}/{len(cases)}",
        "slsqp_same_allocation_as_exact": f"{same_allocation}/{len(cases)}",
        "slsqp_default_ftol_worse_variance": f"{default_worse}/{len(cases)}",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
