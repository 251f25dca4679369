"""Paired Augmentation Module: Eq. 8 allocation (exact vs brute force vs SLSQP) and Algorithm 2's batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from sspa_hf.training.pairing import allocate, allocate_across, pair_and_mix


def _brute_force_min_variance(h: np.ndarray, n: int) -> float:
    eligible = np.flatnonzero(h > 0)
    best = np.inf
    for combo in itertools.product(range(n + 1), repeat=len(eligible)):
        if sum(combo) == n:
            s = np.zeros_like(h)
            s[eligible] = combo
            best = min(best, np.var(h + s))
    return best


def _greedy(h: np.ndarray, n: int) -> np.ndarray:
    """One unit at a time to the lowest eligible class, lowest index first: the stated tie rule."""
    s = np.zeros_like(h)
    for _ in range(n):
        level = np.where(h > 0, h + s, np.iinfo(np.int64).max)
        s[int(np.argmin(level))] += 1
    return s


def test_exact_allocation_matches_brute_force_on_all_small_cases():
    for h in itertools.product(range(4), repeat=4):
        h = np.array(h)
        if not h.any():
            continue
        for n in range(7):
            s = allocate(h, n, method="exact")
            assert s.sum() == n and np.all(s >= 0) and np.all(s[h == 0] == 0)
            assert np.var(h + s) == pytest.approx(_brute_force_min_variance(h, n), abs=1e-12)
            np.testing.assert_array_equal(s, _greedy(h, n))  # fixed tie rule


def test_exact_and_slsqp_reach_the_same_variance_on_thousands_of_random_batches():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h = rng.integers(0, 40, size=7) * (rng.random(7) > 0.2)
        if not h.any():
            continue
        n = int(rng.integers(0, 80))
        exact, slsqp = allocate(h, n, method="exact"), allocate(h, n, method="slsqp")
        assert slsqp.sum() == n and np.all(slsqp >= 0) and np.all(slsqp[h == 0] == 0)
        assert np.var(h + slsqp) == pytest.approx(np.var(h + exact), abs=1e-9), (h.tolist(), n)


def test_allocation_hand_example_and_errors():
    # h = (anger 1, disgust 0, fear 3, happiness 5, ...): the tail is raised to a common level first.
    np.testing.assert_array_equal(allocate([1, 0, 3, 5, 0, 0, 0], 5), [4, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(allocate([2, 2, 2], 4), [2, 1, 1])
    np.testing.assert_array_equal(allocate([0, 9, 0], 4), [0, 4, 0])
    with pytest.raises(ValueError, match="no clean sample"):
        allocate([0, 0, 0], 3)
    with pytest.raises(ValueError, match="'lp'"):
        allocate([1, 2], 1, method="lp")
    np.testing.assert_array_equal(allocate([0, 0], 0), [0, 0])


def _coded_batch(labels: list[int], clean: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channel 0 holds the sample id, channel 1 is 1 for clean samples: a mixture reveals lambda and partner."""
    n = len(labels)
    pixels = torch.zeros(n, 2, 3, 3, dtype=torch.float64)
    pixels[:, 0] = torch.arange(n, dtype=torch.float64).view(-1, 1, 1)
    pixels[:, 1] = torch.tensor(clean, dtype=torch.float64).view(-1, 1, 1)
    return pixels, torch.tensor(labels), torch.tensor(clean)


def _decode(pixels: torch.Tensor, original: torch.Tensor, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam = pixels[noisy, 1, 0, 0].numpy()
    partner = (pixels[noisy, 0, 0, 0].numpy() - (1 - lam) * original[noisy, 0, 0, 0].numpy()) / lam
    return lam, partner


def test_paired_batch_has_histogram_h_plus_s_and_partner_labels():
    labels = [3, 3, 3, 3, 4, 4, 5, 0, 3, 4, 5, 6, 2, 3]
    clean = [True] * 8 + [False] * 6
    pixels, y, c = _coded_batch(labels, clean)
    out = pair_and_mix(pixels, y, c, rng=np.random.default_rng(1), alpha=5, beta=1, num_classes=7)
    h = np.bincount(np.array(labels)[:8], minlength=7)
    np.testing.assert_array_equal(out.created, allocate(h, 6))
    np.testing.assert_array_equal(np.bincount(out.labels.numpy(), minlength=7), h + out.created)
    noisy = np.arange(8, 14)
    lam, partner = _decode(out.pixel_values, pixels, noisy)
    assert np.all((lam > 0) & (lam < 1))
    np.testing.assert_allclose(partner, np.round(partner), atol=1e-6)
    partner = np.round(partner).astype(int)
    assert np.all(partner < 8), "partners are clean samples"
    np.testing.assert_array_equal(out.labels.numpy()[noisy], np.array(labels)[partner])  # Eq. 7
    torch.testing.assert_close(out.pixel_values[:8], pixels[:8])  # clean samples untouched
    assert torch.all(out.loss_weight == 1)


def test_lambda_follows_the_configured_beta_distribution():
    labels = [0, 1, 2, 3] + [4] * 60
    clean = [True] * 4 + [False] * 60
    pixels, y, c = _coded_batch(labels, clean)
    lams = []
    for seed in range(100):
        out = pair_and_mix(pixels, y, c, rng=np.random.default_rng(seed), alpha=5, beta=1)
        lams.append(_decode(out.pixel_values, pixels, np.arange(4, 64))[0])
    lams = np.concatenate(lams)
    assert stats.kstest(lams, stats.beta(5, 1).cdf).pvalue > 1e-3
    assert stats.kstest(lams, stats.beta(1, 5).cdf).pvalue < 1e-6


def test_edge_cases_no_clean_no_noisy_one_clean_class():
    pixels, y, c = _coded_batch([0, 1, 2], [False, False, False])
    out = pair_and_mix(pixels, y, c, rng=np.random.default_rng(0))
    assert torch.all(out.loss_weight == 0) and out.created.sum() == 0
    torch.testing.assert_close(out.pixel_values, pixels)

    pixels, y, c = _coded_batch([0, 1, 2], [True, True, True])
    out = pair_and_mix(pixels, y, c, rng=np.random.default_rng(0))
    assert torch.all(out.loss_weight == 1) and out.created.sum() == 0
    torch.testing.assert_close(out.pixel_values, pixels)

    pixels, y, c = _coded_batch([6, 6, 1, 2, 3], [True, True, False, False, False])
    out = pair_and_mix(pixels, y, c, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out.created, [0, 0, 0, 0, 0, 0, 3])
    assert out.labels.tolist() == [6, 6, 6, 6, 6]


def test_pairing_is_a_function_of_the_generator_seed():
    pixels, y, c = _coded_batch([0, 1, 1, 2, 4, 5, 6, 3], [True, True, True, False, False, True, False, False])
    a = pair_and_mix(pixels, y, c, rng=np.random.default_rng(7))
    b = pair_and_mix(pixels, y, c, rng=np.random.default_rng(7))
    d = pair_and_mix(pixels, y, c, rng=np.random.default_rng(8))
    torch.testing.assert_close(a.pixel_values, b.pixel_values)
    assert not torch.equal(a.pixel_values, d.pixel_values)


def _compositions(n: int, allowed: np.ndarray):
    """Every way of spreading n units over the allowed classes."""
    classes = np.flatnonzero(allowed)
    for combo in itertools.product(range(n + 1), repeat=len(classes)):
        if sum(combo) == n:
            row = np.zeros(len(allowed), dtype=np.int64)
            row[classes] = combo
            yield row


def _check_split(h: np.ndarray, n: np.ndarray, s: np.ndarray) -> None:
    has_clean = h.sum(axis=1) > 0
    np.testing.assert_array_equal(s.sum(axis=1), np.where(has_clean, n, 0))  # each process mixes its own noisy
    assert np.all(s >= 0) and np.all(s[h == 0] == 0)  # partners only from the process's own clean samples


def test_allocation_across_processes_is_the_plain_allocation_with_one_process():
    rng = np.random.default_rng(1)
    for _ in range(500):
        h = rng.integers(0, 30, size=(1, 7)) * (rng.random((1, 7)) > 0.3)
        if not h.any():
            continue
        n = rng.integers(0, 70, size=1)
        np.testing.assert_array_equal(allocate_across(h, n)[0], allocate(h[0], int(n[0])))


def test_allocation_across_processes_is_optimal_among_all_splits_on_small_cases():
    rng = np.random.default_rng(2)
    for _ in range(300):
        h = rng.integers(0, 4, size=(2, 3)) * (rng.random((2, 3)) > 0.4)
        n = rng.integers(0, 4, size=2)
        s = allocate_across(h, n)
        _check_split(h, n, s)
        has_clean = h.sum(axis=1) > 0
        rows = [list(_compositions(int(n[p]) if has_clean[p] else 0, h[p] > 0)) for p in range(2)]
        best = min(np.var(h.sum(0) + a + b) for a, b in itertools.product(*rows))
        assert np.var(h.sum(0) + s.sum(0)) == pytest.approx(best, abs=1e-12), (h.tolist(), n.tolist())
        total = int(n[has_clean].sum())
        if h.any():  # where the plain allocation of the summed batch can be split, the variance is the same
            plain = allocate(h.sum(0), total)
            if any(np.array_equal(a + b, plain) for a, b in itertools.product(*rows)):
                assert np.var(h.sum(0) + s.sum(0)) == pytest.approx(np.var(h.sum(0) + plain), abs=1e-12)


def test_allocation_across_processes_keeps_both_marginals_on_random_batches():
    rng = np.random.default_rng(3)
    for _ in range(1000):
        processes = int(rng.integers(1, 9))
        h = rng.integers(0, 12, size=(processes, 7)) * (rng.random((processes, 7)) > 0.5)
        n = rng.integers(0, 12, size=processes)
        s = allocate_across(h, n)
        _check_split(h, n, s)
        if h.any():  # never worse than each process solving its own batch
            local = np.stack([allocate(h[p], int(n[p])) if h[p].any() else np.zeros(7, int) for p in range(processes)])
            assert np.var(h.sum(0) + s.sum(0)) <= np.var(h.sum(0) + local.sum(0)) + 1e-12


def test_allocation_across_processes_when_the_plain_allocation_cannot_be_split():
    # Process 0 has 10 noisy samples and only clean class 0; class 1's clean sample sits on process 1, which has
    # no noisy sample. Plain Eq. 8 on the summed batch would create 10 of class 1; no process can: class 0 gets them.
    h = np.array([[100, 0], [0, 1]])
    assert allocate(h.sum(0), 10).tolist() == [0, 10]
    assert allocate_across(h, np.array([10, 0])).tolist() == [[10, 0], [0, 0]]
    # A process with noisy samples but no clean sample: nothing to pair with (row 0; its noisy get weight 0).
    assert allocate_across(np.array([[0, 0], [2, 1]]), np.array([5, 3])).tolist() == [[0, 0], [1, 2]]


def test_pair_and_mix_with_a_given_allocation():
    pixels = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1)
    labels = torch.tensor([0, 1, 1, 0, 0, 2])
    clean = torch.tensor([True, True, True, False, False, False])
    out = pair_and_mix(
        pixels, labels, clean, rng=np.random.default_rng(0), num_classes=3, allocation=np.array([3, 0, 0])
    )
    assert out.labels[3:].tolist() == [0, 0, 0] and out.created.tolist() == [3, 0, 0]
    with pytest.raises(ValueError, match="does not fit"):
        pair_and_mix(pixels, labels, clean, rng=np.random.default_rng(0), num_classes=3, allocation=np.array([0, 0, 3]))
