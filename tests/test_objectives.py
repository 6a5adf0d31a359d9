"""MoCo, VICReg, BYOL (and the SimCLR wrapper) against direct transcriptions of the papers' formulas
on fixed tensors; MoCo's queue; the momentum helper; DDP equal to one process."""
import math
import os
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.objectives.byol import BYOL, byol_loss
from ssl_min.objectives import NTXent, SimCLR
from ssl_min.objectives.moco import MoCo
from ssl_min.objectives.momentum import byol_momentum, ema_update, momentum_copy
from ssl_min.objectives.vicreg import vicreg_loss
from test_model_loss import _free_port


class Head(nn.Module):
    """A stand-in for ContrastiveModel: forward(x, groups) on (2N, D_in) rows."""

    def __init__(self, d_in=6, d_out=5):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x, groups=1):
        return self.lin(x)


# ---------------------------------------------------------------- momentum

def test_ema_update_and_byol_schedule_follow_their_formulas():
    online, target = Head(), None
    target = momentum_copy(online, 0.9)
    assert all(not p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    ema_update(target, online, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    assert byol_momentum(0.996, 0.0) == 0.996
    assert math.isclose(byol_momentum(0.996, 0.5), 1 - 0.004 / 2)
    assert byol_momentum(0.996, 1.0) == 1.0
    for bad in (1.0, -0.1):                            # MoCo and BYOL both build their copy here
        with pytest.raises(ValueError, match="momentum must be in"):
            MoCo(online, 4, momentum=bad)
        with pytest.raises(ValueError, match="momentum must be in"):
            BYOL(online, 4, 8, momentum=bad)


# ---------------------------------------------------------------- MoCo

def test_moco_queue_enqueues_in_order_and_wraps_around():
    moco = MoCo(Head(), dim=2, queue_size=5)
    a, b = torch.arange(6.).view(3, 2), 10 + torch.arange(6.).view(3, 2)
    moco.enqueue(a, torch.tensor([0, 1, 2]))
    assert moco.ptr.item() == 3
    torch.testing.assert_close(moco.queue[:3], a)
    assert moco.queue_ids[:3].tolist() == [0, 1, 2] and moco.queue_ids[3:].tolist() == [-1, -1]
    moco.enqueue(b, torch.tensor([3, 4, 5]))                   # rows 3, 4, then 0: the oldest goes
    assert moco.ptr.item() == 1
    torch.testing.assert_close(moco.queue[[3, 4, 0]], b)
    torch.testing.assert_close(moco.queue[[1, 2]], a[1:])
    assert moco.queue_ids.tolist() == [5, 1, 2, 3, 4]


def test_moco_queue_smaller_than_the_keys_of_a_step_keeps_the_newest_where_order_puts_them():
    moco = MoCo(Head(), dim=1, queue_size=3)
    moco.enqueue(torch.tensor([[9.]]), torch.tensor([9]))      # ptr 1
    keys = torch.arange(5.).view(5, 1)
    moco.enqueue(keys, torch.arange(5))                           # rows 1,2,0,1,2 in turn: 3, 4 last
    assert moco.ptr.item() == (1 + 5) % 3
    assert moco.queue.flatten().tolist() == [2., 3., 4.] and moco.queue_ids.tolist() == [2, 3, 4]


def test_moco_loss_is_infonce_against_the_queue_and_keys_carry_no_gradient():
    torch.manual_seed(0)
    model = Head()
    moco = MoCo(model, dim=5, queue_size=7, momentum=0.9, temperature=0.2)
    moco.queue_ids[:] = torch.tensor([0, 5, 5, 6, 7, 8, 9])         # one row of track 0
    queue, qids = moco.queue.clone(), moco.queue_ids.clone()
    x, ids = torch.randn(6, 6), torch.tensor([0, 1, 2])
    loss = moco(model, x, ids)
    loss.backward()
    assert all(p.grad is None for p in moco.key_encoder.parameters())     # keys: no gradient
    assert not moco.queue.requires_grad
    with torch.no_grad():                                                  # the formula, row by row
        q = F.normalize(model(x), dim=1)
        k = F.normalize(moco.key_encoder(x), dim=1)
        terms = []
        for qi, ki in ((q[:3], k[3:]), (q[3:], k[:3])):
            for i in range(3):
                pos = math.exp(qi[i] @ ki[i] / 0.2)
                neg = sum(math.exp(qi[i] @ queue[j] / 0.2) for j in range(7) if qids[j] != ids[i])
                terms.append(-math.log(pos / (pos + neg)))
        ref = (sum(terms[:3]) / 3 + sum(terms[3:]) / 3) / 2
    assert math.isclose(loss.item(), ref, rel_tol=1e-5)
    # this step's 2N keys went into the queue, view 1 then view 2
    torch.testing.assert_close(moco.queue[:6], k)
    assert moco.queue_ids[:6].tolist() == [0, 1, 2, 0, 1, 2] and moco.ptr.item() == 6


# ---------------------------------------------------------------- VICReg

def test_vicreg_equals_the_papers_formulas_written_out():
    torch.manual_seed(1)
    za, zb = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    n, d = za.shape

    def var_term(z):
        tot = 0.0
        for j in range(d):
            col = z[:, j]
            var = sum((c - col.mean()) ** 2 for c in col) / (n - 1)
            tot += max(0.0, 1 - math.sqrt(var + 1e-4))
        return tot / d

    def cov_term(z):
        zc = z - z.mean(0)
        tot = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    tot += (sum(zc[k, i] * zc[k, j] for k in range(n)) / (n - 1)) ** 2
        return tot / d

    sim = sum(((za[k] - zb[k]) ** 2).sum() for k in range(n)) / (n * d)
    ref = 25 * sim + 25 * (var_term(za) + var_term(zb)) + 1 * (cov_term(za) + cov_term(zb))
    assert math.isclose(vicreg_loss(za, zb).item(), float(ref), rel_tol=1e-10)
    # a collapsed batch pays the whole variance term: 25 * (1 - sqrt(eps)) * 2
    same = torch.ones(8, 4, dtype=torch.float64)
    assert math.isclose(vicreg_loss(same, same).item(), 50 * (1 - 1e-2), rel_tol=1e-10)


# ---------------------------------------------------------------- BYOL

def test_byol_loss_is_the_normalised_squared_distance_and_target_gets_no_gradient():
    torch.manual_seed(2)
    p, z = torch.randn(5, 3), torch.randn(5, 3)
    ref = ((p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)) ** 2).sum(1)
    torch.testing.assert_close(byol_loss(p, z), ref, rtol=1e-5, atol=1e-6)

    model = Head()
    byol = BYOL(model, dim=5, hidden=8, momentum=0.99)
    x = torch.randn(8, 6)
    loss = byol(model, x)
    loss.backward()
    with torch.no_grad():
        pred = byol.predictor(model(x))
        t = byol.target(x)
    ref = byol_loss(pred[:4], t[4:]).mean() + byol_loss(pred[4:], t[:4]).mean()
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-5)
    assert all(p.grad is None for p in byol.target.parameters())
    assert all(p.grad is not None for p in byol.trainable())
    assert set(byol.state_dict()) >= {"predictor.0.weight", "target.lin.weight"}
    assert not any(k.startswith("run") for k in byol.state_dict())
    keys = set(byol.state_dict())
    byol.distribute(lambda m: nn.Sequential(m))                  # a stand-in for DDP's wrapper
    assert byol.run is not byol.predictor and set(byol.state_dict()) == keys
    assert torch.equal(byol.run(model(x)), pred)                 # the wrapper runs the same predictor


def test_simclr_objective_is_ntxent_of_the_two_halves():
    model, x, ids = Head(), torch.randn(8, 6), torch.tensor([0, 1, 1, 2])
    z = model(x)
    assert math.isclose(SimCLR(0.3)(model, x, ids).item(), NTXent(0.3)(z[:4], z[4:], ids=ids).item(), rel_tol=1e-6)


# ---------------------------------------------------------------- DDP: 2 gloo processes

def _objective(name, model):
    torch.manual_seed(3)
    if name == "moco":
        return MoCo(model, dim=5, queue_size=16, momentum=0.9, temperature=0.2)
    if name == "byol":
        return BYOL(model, dim=5, hidden=8)
    from ssl_min.objectives.vicreg import VICReg
    return VICReg()


def _dist_worker(rank, world, port, name, x, ids, state, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = Head()
    model.load_state_dict(state)
    objective = _objective(name, model)
    objective.distribute(DDP)
    n = x.shape[0] // 2 // world                     # this process's pairs: view 1 rows, view 2 rows
    rows = torch.cat([torch.arange(rank * n, (rank + 1) * n), x.shape[0] // 2 + torch.arange(rank * n, (rank + 1) * n)])
    ddp = DDP(model)                                 # held: a collected DDP takes its gradient hooks along
    loss = objective(ddp, x[rows], ids[rank * n:(rank + 1) * n])
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.save({"loss": mean_loss / world, "grad": model.lin.weight.grad, "state": objective.state_dict(),
                "trainable": [p.grad for p in objective.trainable()]}, os.path.join(out_dir, f"r{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)                                      # see test_model_loss.py: no gloo teardown abort


def _run_two(name, tmp_path):
    torch.manual_seed(4)
    x, ids = torch.randn(8, 6), torch.tensor([0, 1, 2, 3])
    model = Head()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mp.start_processes(_dist_worker, args=(2, _free_port(), name, x, ids, state, str(tmp_path)),
                       nprocs=2, join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in (0, 1))
    single_model = Head()
    single_model.load_state_dict(state)
    objective = _objective(name, single_model)
    single = objective(single_model, x, ids)
    single.backward()
    return r0, r1, single, single_model, objective


def test_vicreg_and_moco_under_ddp_equal_one_process_with_the_whole_batch(tmp_path):
    for name in ("vicreg", "moco"):
        (tmp_path / name).mkdir()
        r0, r1, single, model, objective = _run_two(name, tmp_path / name)
        torch.testing.assert_close(r0["loss"], single.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r0["grad"], model.lin.weight.grad, rtol=1e-4, atol=1e-6)
        if name == "moco":                           # every process holds the same queue: all 2N keys
            torch.testing.assert_close(r0["state"]["queue"], r1["state"]["queue"])
            assert sorted(r0["state"]["queue_ids"][:8].tolist()) == sorted(objective.queue_ids[:8].tolist())
            assert r0["state"]["ptr"].item() == objective.ptr.item() == 8


def test_byol_predictor_gradients_are_averaged_across_processes(tmp_path):
    r0, r1, *_ = _run_two("byol", tmp_path)
    for a, b in zip(r0["trainable"], r1["trainable"]):
        torch.testing.assert_close(a, b)
