"""--sync_bn: two gloo processes with BatchNorm in the model equal one process on the whole batch
(loss, every gradient, the running statistics); without it they do not."""
import os
import sys

import torch
import torch.multiprocessing as mp

from ssl_min.models import build_model
from ssl_min.objectives import NTXent
from ssl_min.runtime.sync_bn import GlobalBatchNorm1d, convert
from test_model_loss import _free_port


def _worker(rank, world, port, x1, x2, state, sync, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = build_model(3, 0.25, "mean", 16, 8, conv="reference").double()
    model.load_state_dict(state)
    if sync:
        model = convert(model, "cpu")
    ddp = DDP(model)
    n = x1.shape[0] // world
    sl = slice(rank * n, (rank + 1) * n)
    loss = NTXent(0.5)(*ddp(torch.cat([x1[sl], x2[sl]])).chunk(2))   # both views in one pass ("joint")
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        torch.save({"loss": mean_loss / world, "grads": {k: p.grad for k, p in model.named_parameters()},
                    "state": model.state_dict()}, os.path.join(out_dir, f"dist_{int(sync)}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)                    # no interpreter teardown under gloo (tests/test_model_loss.py says why)


def test_sync_bn_under_two_gloo_processes_equals_one_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    model = build_model(3, 0.25, "mean", 16, 8, conv="reference").double().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x1, x2 = torch.randn(8, 1, 200, dtype=torch.float64), torch.randn(8, 1, 200, dtype=torch.float64)
    single = NTXent(0.5)(*model(torch.cat([x1, x2])).chunk(2))
    single.backward()
    for sync in (True, False):
        mp.start_processes(_worker, args=(2, _free_port(), x1, x2, state, sync, str(tmp_path)), nprocs=2, join=True,
                           start_method="spawn")
    synced, local = (torch.load(tmp_path / f"dist_{i}.pt", weights_only=True) for i in (1, 0))
    torch.testing.assert_close(synced["loss"], single.detach().float(), rtol=1e-5, atol=1e-6)
    grads = dict(model.named_parameters())
    for name, g in synced["grads"].items():
        scale = max(grads[name].grad.abs().max().item(), 1e-8)   # a conv bias before BatchNorm: true gradient 0
        assert (g - grads[name].grad).abs().max().item() <= 1e-4 * scale + 1e-9, name
    for name, v in model.state_dict().items():                   # the running statistics moved alike
        torch.testing.assert_close(synced["state"][name], v, rtol=1e-9, atol=1e-12)
    # The control: per-process statistics (CLMR's DDP) give another loss and other gradients.
    weight = "encoder.net.0.weight"
    assert (local["grads"][weight] - grads[weight].grad).abs().max() > 1e-3 * grads[weight].grad.abs().max()


def test_one_process_global_batchnorm_is_batchnorm():
    torch.manual_seed(1)
    bn, ours = torch.nn.BatchNorm1d(4).double(), GlobalBatchNorm1d(4).double()
    x = torch.randn(5, 4, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), bn(x))
    model = convert(torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.BatchNorm1d(4)), "cpu")
    assert type(model[1]) is GlobalBatchNorm1d and set(model.state_dict()) == {
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
