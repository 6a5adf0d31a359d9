"""Effects whose settings are shared by examples (ssl_min/augment/shared.py): each example gets
exactly the effect of its dealt setting, the deal is balanced, and reuse=1 is CLMR's chain."""
import math

import pytest
import torch

from ssl_min import augment as A

SR = 8000


def effects(reuse):
    return [A.HighLowPass(SR, 1500, 3500, 200, 1200, reuse=reuse), A.LowPassFilter(SR, reuse=reuse),
            A.Reverb(SR, reuse=reuse)]


def pick(params, i):
    return {k: v[i:i + 1] for k, v in params.items()}


@pytest.mark.parametrize("reuse,B", [(2, 7), (4, 16), (5, 3)])
@pytest.mark.parametrize("which", range(3))
def test_each_example_gets_the_effect_of_the_setting_dealt_to_it(reuse, B, which):
    """Replaying the generator: m = ceil(B / reuse) draws, then a shuffled deal; every example equals
    the effect applied to it alone with its dealt setting (float64: to rounding)."""
    f = effects(reuse)[which]
    x = torch.randn(B, 2, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = f(x, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    m = math.ceil(B / reuse)
    params = f.sample(m, x.device, g)
    deal = torch.randperm(B, generator=g) % m
    for b in range(B):
        alone = f.apply(x[b:b + 1], pick(params, int(deal[b])))
        torch.testing.assert_close(y[b:b + 1], alone, rtol=0, atol=1e-10)


def test_the_deal_is_balanced_and_shuffled():
    """m settings for B examples: each goes to floor(B/m) or ceil(B/m) of them, in a random order."""
    f = A.Reverb(SR, reuse=4)
    seen = []
    f.apply_response = lambda x, rows: seen.append(rows) or x
    for seed in range(5):
        f(torch.zeros(22, 1, 500), generator=torch.Generator().manual_seed(seed))
    assert len(seen) == 5
    for rows in seen:
        distinct, which, counts = torch.unique(torch.view_as_real(rows).flatten(1), dim=0, return_inverse=True,
                                               return_counts=True)
        assert len(distinct) == math.ceil(22 / 4) == 6
        assert sorted(counts.tolist()) == [3, 3, 4, 4, 4, 4]
        runs = (which[1:] != which[:-1]).sum()            # dealt in blocks or in turn would give 5 or 21
        assert runs not in (5, 21)


def test_reuse_one_draws_every_example_its_own_as_before():
    """reuse=1 takes Augmentation.transform: sample(B) then apply, CLMR's draws exactly."""
    x = torch.randn(6, 1, 2000, generator=torch.Generator().manual_seed(0))
    for f in effects(1):
        g = torch.Generator().manual_seed(2)
        ref = f.apply(x, f.sample(6, x.device, g))
        assert torch.equal(f(x, generator=torch.Generator().manual_seed(2)), ref)


def test_shared_chain_is_seeded_and_never_writes_its_input():
    chain = A.build_chain(SR, p_filter=0.7, p_reverb=0.5, p_delay=0.5, lowpass=(1500, 3500), effect_reuse=4)
    x = 0.1 * torch.randn(32, 1, 2187, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    a = chain(x, generator=torch.Generator().manual_seed(5))
    b = chain(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, before) and torch.equal(a, b) and not torch.equal(a, x)


def test_reuse_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="effect_reuse"):
        A.build_chain(SR, effect_reuse=0)
    with pytest.raises(ValueError, match="effect_reuse"):
        A.build_chain(SR, effect_reuse=2.5)


def test_a_cutoff_below_the_filters_range_is_refused():
    """Kernels are laid out for the longest one the ranges can draw: a cutoff below them says so."""
    f = A.LowPassFilter(SR, 1500, 3500)
    with pytest.raises(ValueError, match="below the filter's range"):
        f.kernels(torch.tensor([1000.0], dtype=torch.float64), torch.tensor([False]))
