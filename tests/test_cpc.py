"""CPC (ssl_min/objectives/cpc.py): the loss against a loop over (t, k, candidates), value and
gradient; causality, from the frames and from the audio; two gloo processes equal one."""
import os
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from ssl_min.models import SampleCNN
from ssl_min.objectives.cpc import CPC, ContextPredictor, cpc_loss
from test_model_loss import _free_port


def naive_cpc(z, preds, ids):
    """The module doc's formula, one (n, t, k) at a time: candidates are every step s of track n and
    step t+k of every other track m (not one of the same id); the positive is z[n, t+k]."""
    n_tracks, frames, _ = z.shape
    steps = preds.shape[2]
    per_k = []
    for k in range(1, steps + 1):
        terms = []
        for n in range(n_tracks):
            for t in range(frames - k):
                w = preds[n, t, k - 1]
                cands = [z[n, s] for s in range(frames)]
                cands += [z[m, t + k] for m in range(n_tracks) if m != n and ids[m] != ids[n]]
                scores = torch.stack([c @ w for c in cands])
                terms.append(-(scores[t + k] - torch.logsumexp(scores, 0)))
        per_k.append(torch.stack(terms).mean())
    return torch.stack(per_k).mean()


def test_the_loss_equals_a_loop_over_steps_offsets_and_candidates_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    preds = torch.randn(4, 7, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 2])                              # rows 0 and 2: one track, twice
    fast = cpc_loss(z, preds, ids)
    gz, gp = torch.autograd.grad(fast, (z, preds))
    slow = naive_cpc(z, preds, ids)
    nz, np_ = torch.autograd.grad(slow, (z, preds))
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gz, nz, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gp, np_, rtol=1e-10, atol=1e-12)
    # Without ids every other row is a negative: a different loss, still the loop's.
    torch.testing.assert_close(cpc_loss(z, preds), naive_cpc(z, preds, torch.arange(4)), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(cpc_loss(z, preds), fast)


def test_too_few_frames_for_the_offsets_is_refused():
    with pytest.raises(ValueError, match="more frames than offsets"):
        cpc_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 3, 4))


def test_the_context_at_t_never_sees_a_later_frame():
    torch.manual_seed(0)
    heads = ContextPredictor(dim=6, context=8, steps=3).double()
    z = torch.randn(2, 10, 6, dtype=torch.float64)
    c, preds = heads(z)
    for t in range(9):
        later = z.clone()
        later[:, t + 1:] = torch.randn(2, 9 - t, 6, dtype=torch.float64)
        c2, preds2 = heads(later)
        assert torch.equal(c2[:, :t + 1], c[:, :t + 1]) and torch.equal(preds2[:, :t + 1], preds[:, :t + 1])
        assert not torch.allclose(c2[:, t + 1], c[:, t + 1])      # the test can fail: later steps do change


def last_sample_seen(t, n_blocks):
    """The last input sample that frame t of SampleCNN's last conv depends on: walk the layers back
    from the output (conv k3 pad 1: j -> j+1; MaxPool(3): j -> 3j+2; the stem, k3 stride 3: j -> 3j+2)."""
    j = t + 1                                                     # the last conv
    for _ in range(n_blocks):
        j = 3 * j + 2                                             # the block's pooling
        j = j + 1                                                 # the block's conv
    return 3 * j + 2                                              # the stem


@pytest.mark.parametrize("conv", ["reference", "fast"])
def test_changing_the_audio_after_frame_t_leaves_the_context_up_to_t_unchanged(conv):
    torch.manual_seed(0)
    n_blocks = 3
    encoder = SampleCNN(n_blocks, width=0.125, pool="mean", conv=conv).double().eval()
    heads = ContextPredictor(encoder.out_dim, context=8, steps=2).double()
    x = torch.randn(2, 1, 81 * 20, dtype=torch.float64)

    def context(audio):
        with torch.no_grad():
            return heads(encoder.frames(audio).transpose(1, 2))[0]   # (B, T', H)

    c = context(x)
    for t in (3, 10, 17):
        end = last_sample_seen(t, n_blocks)
        after = x.clone()
        after[..., end + 1:] = torch.randn_like(after[..., end + 1:])
        torch.testing.assert_close(context(after)[:, :t + 1], c[:, :t + 1], rtol=0, atol=1e-12)
        at = x.clone()
        at[..., end:] = torch.randn_like(at[..., end:])           # one sample earlier: frame t sees it
        assert not torch.allclose(context(at)[:, t], c[:, t])


# ---------------------------------------------------------------- DDP: 2 gloo processes

class Frames(nn.Module):
    """A stand-in FrameModel: x (N, 1, T' * 4) -> z (N, 5, T'), a linear map of 4-sample frames."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 5)

    def forward(self, x, groups=1):
        return self.lin(x.reshape(x.shape[0], -1, 4)).transpose(1, 2)


def _dist_worker(rank, world, port, x, ids, state, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = Frames()
    objective = CPC(5, context=6, steps=3)
    objective.load_state_dict(state["objective"])
    model.load_state_dict(state["model"])
    objective.distribute(DDP)
    ddp = DDP(model)
    n = x.shape[0] // world
    loss = objective(ddp, x[rank * n:(rank + 1) * n], ids[rank * n:(rank + 1) * n])
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.save({"loss": mean_loss / world, "grad": model.lin.weight.grad,
                "heads": [p.grad for p in objective.trainable()]}, os.path.join(out_dir, f"r{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)                                      # see test_model_loss.py: no gloo teardown abort


def test_two_processes_equal_one_with_the_whole_batch(tmp_path):
    torch.manual_seed(4)
    x, ids = torch.randn(6, 1, 40), torch.tensor([0, 1, 2, 0, 3, 4])   # 10 frames; track 0 on both processes
    model, objective = Frames(), CPC(5, context=6, steps=3)
    state = {"model": model.state_dict(), "objective": objective.state_dict()}
    mp.start_processes(_dist_worker, args=(2, _free_port(), x, ids, state, str(tmp_path)),
                       nprocs=2, join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in (0, 1))
    single = objective(model, x, ids)
    single.backward()
    torch.testing.assert_close(r0["loss"], single.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r0["grad"], model.lin.weight.grad, rtol=1e-4, atol=1e-6)
    for a, b, p in zip(r0["heads"], r1["heads"], objective.trainable()):
        torch.testing.assert_close(a, b)                          # DDP averaged the heads' gradients too
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- its configuration

def cpc_config(tmp_path, *flags):
    from ssl_min.config import config_for_run, parse_args
    notes = []
    args, given = parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--objective", "cpc",
                              "--device", "cpu", "--precision", "fp32", "--conv", "fast", *flags])
    return config_for_run(args, given, notes)[0], notes


def test_cpc_brings_its_defaults_over_the_preset_says_so_and_flags_still_win(tmp_path):
    cfg, notes = cpc_config(tmp_path, "--preset", "demo")
    assert (cfg.n_blocks, cfg.pool, cfg.chunk_samples) == (4, "mean", 243 * 64)
    assert cfg.p_polarity == cfg.p_filter == cfg.p_reverb == cfg.p_noise == 0 and cfg.sample_rate == 8000   # demo's rate
    assert any(n.startswith("objective cpc: n_blocks 4, pool mean, chunk_samples 15552") for n in notes)
    cfg, notes = cpc_config(tmp_path, "--preset", "demo", "--n_blocks", "3", "--p_filter", "0.5")
    assert (cfg.n_blocks, cfg.p_filter, cfg.chunk_samples) == (3, 0.5, 15552)
    assert "n_blocks" not in next(n for n in notes if n.startswith("objective cpc"))


@pytest.mark.parametrize("flags,message", [
    (["--chunk_samples", str(243 * 12)], "at least cpc_steps \\+ 1 = 13 frames"),
    (["--pool", "flatten", "--chunk_samples", "243"], "pool=mean"),
    (["--bn_views", "separate"], "single chunks")])
def test_a_cpc_config_that_cannot_predict_is_refused_in_one_line(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        cpc_config(tmp_path, *flags)
