"""The fast formulation (ssl_min/models/fast.py and conv.py, SampleCNN conv="fast") against the plain one:
F.conv1d and CLMR's nn.Conv1d / BatchNorm1d / ReLU / MaxPool1d stack, outputs and gradients."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.models.conv import CL, conv1d_cl, library_grads, weight_grad
from ssl_min.models import CLMR_CHANNELS, SampleCNN, build_model
from ssl_min.models.stem import strided_stem


def to_cl(x):
    """(B, C, T) -> (B, C, 1, T) channels-last."""
    return x.unsqueeze(2).contiguous(memory_format=CL)


@pytest.mark.parametrize("k,B,T", [(3, 4, 37), (5, 3, 11), (3, 1, 5), (1, 2, 9)])
def test_conv1d_cl_equals_conv1d_outputs_and_gradients(k, B, T):
    x = torch.randn(B, 6, T, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 6, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    ref = F.conv1d(x, w, b, padding=k // 2)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w, b), g)

    xc = to_cl(x.detach()).requires_grad_()
    out = conv1d_cl(xc, w, b)
    assert out.shape == (B, 7, 1, T) and out.is_contiguous(memory_format=CL)
    grads = torch.autograd.grad(out, (xc, w, b), to_cl(g))
    torch.testing.assert_close(out.squeeze(2), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0].squeeze(2), ref_grads[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[1], ref_grads[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[2], ref_grads[2], rtol=1e-12, atol=1e-12)


def test_weight_grad_undoes_the_clip_seams():
    """Frames of clip b must never pair with frames of clip b+1: a clip whose gradient is zero
    contributes nothing, whatever its neighbours hold."""
    x = to_cl(torch.randn(3, 4, 10, dtype=torch.float64))
    g = to_cl(torch.randn(3, 5, 10, dtype=torch.float64))
    g[1] = 0
    alone = weight_grad(x[[0, 2]], g[[0, 2]], 3)
    torch.testing.assert_close(weight_grad(x, g, 3), alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_weight_grad_in_blocks_equals_one_block_and_the_reference(k):
    x = to_cl(torch.randn(3, 4, 10, dtype=torch.float64))
    g = to_cl(torch.randn(3, 5, 10, dtype=torch.float64))
    ref = torch.nn.grad.conv1d_weight(x.squeeze(2), (5, 4, k), g.squeeze(2), padding=k // 2)
    for block in (1, 7, 10, 1000):                 # blocks that cut clips anywhere
        torch.testing.assert_close(weight_grad(x, g, k, block=block), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_library_grads_equal_the_reference(k):
    """The bf16/fp16 path's weight gradient (oneDNN's own kernel) on channels-last rows."""
    x = to_cl(torch.randn(3, 4, 10, dtype=torch.float64))
    g = to_cl(torch.randn(3, 5, 10, dtype=torch.float64))
    ref = torch.nn.grad.conv1d_weight(x.squeeze(2), (5, 4, k), g.squeeze(2), padding=k // 2)
    w = torch.zeros(5, 4, k, dtype=torch.float64)
    gw, gb = library_grads(x, g, w, bias=False)
    torch.testing.assert_close(gw, ref, rtol=1e-12, atol=1e-12)
    assert gb is None
    gw, _ = library_grads(x.float(), g.float(), w.float(), bias=False)
    torch.testing.assert_close(gw, ref.float(), rtol=1e-5, atol=1e-5)
    gw, gb = library_grads(x, g, w, bias=True)                       # the bias's from the same pass
    torch.testing.assert_close(gw, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, g.sum(dim=(0, 2, 3)), rtol=1e-12, atol=1e-12)


def reference_stack(model: SampleCNN) -> nn.Sequential:
    """CLMR's formulation with CLMR's own module classes (nn.BatchNorm1d, not ours), the same
    weights: what every checkpoint written before the fast layout holds."""
    layers = [nn.BatchNorm1d(m.num_features) if isinstance(m, nn.BatchNorm1d) else copy.deepcopy(m)
              for m in model.net]
    ref = nn.Sequential(*layers)
    ref.load_state_dict(model.net.state_dict())
    return ref


@pytest.mark.parametrize("n_blocks,width,pool,T", [(3, 0.25, "flatten", 81), (4, 0.125, "mean", 300)])
def test_fast_samplecnn_equals_clmr_formulation(n_blocks, width, pool, T):
    torch.manual_seed(1)
    fast = SampleCNN(n_blocks, width, pool, conv="fast").double().train()
    ref = reference_stack(fast).double().train()
    x = torch.randn(6, 1, T, dtype=torch.float64)
    h = fast(x)
    r = ref(x)
    r = r.mean(-1) if pool == "mean" else r.flatten(1)
    torch.testing.assert_close(h, r, rtol=1e-10, atol=1e-10)
    # BatchNorm's running statistics moved the same way in both
    torch.testing.assert_close(fast.net.state_dict(), ref.state_dict(), rtol=1e-10, atol=1e-10)

    g = torch.randn_like(h)
    fast_grads = torch.autograd.grad(h, list(fast.parameters()), g)
    ref_grads = torch.autograd.grad(r, list(ref.parameters()), g)
    for (name, _), a, b in zip(fast.named_parameters(), fast_grads, ref_grads):
        # a conv bias followed by train-mode BatchNorm has a true gradient of 0: compare to the scale
        scale = max(b.abs().max().item(), 1e-6)
        assert (a - b).abs().max().item() <= 1e-8 * scale + 1e-12, name


@pytest.mark.parametrize("pool,T", [("flatten", 3 ** 5), ("mean", 3 ** 5 + 40)])
def test_reference_and_fast_give_the_same_loss_and_gradients_in_float64(pool, T):
    """--conv reference and --conv fast: the same model (encoder, projector), the same weights, the
    same batch -> the same NT-Xent loss and the same gradient for every parameter, in float64."""
    from ssl_min.objectives import NTXent
    torch.manual_seed(7)
    ref = build_model(4, 0.25, pool, 32, 16, conv="reference").double().train()
    fast = build_model(4, 0.25, pool, 32, 16, conv="fast").double().train()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(12, 1, T, dtype=torch.float64)
    losses = {}
    for name, model in (("reference", ref), ("fast", fast)):
        losses[name] = NTXent(0.2)(*model(x).chunk(2))
        losses[name].backward()
    torch.testing.assert_close(losses["fast"], losses["reference"], rtol=1e-12, atol=1e-12)
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        scale = max(p.grad.abs().max().item(), 1e-6)        # a conv bias before BatchNorm: true gradient 0
        assert (q.grad - p.grad).abs().max().item() <= 1e-10 * scale + 1e-12, name


def test_fast_path_in_float32_within_float_rounding_and_eval_mode():
    torch.manual_seed(2)
    model = build_model(5, 0.25, "mean", conv="fast").encoder.train()
    ref = reference_stack(model).train()
    x = torch.randn(4, 1, 3 ** 6 + 50)
    torch.testing.assert_close(model(x), ref(x).mean(-1), rtol=1e-4, atol=1e-5)
    model.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).mean(-1), rtol=1e-4, atol=1e-5)


def test_fast_path_under_bf16_autocast_within_bf16_rounding():
    """Under bf16 autocast both formulations round, differently (ours folds the stem's BatchNorm
    into its product, sums in float32 where oneDNN does not ...): each gradient is compared with
    the float64 gradient, ours no further from it than the reference formulation's own bf16 one
    (within 2x per parameter; a wrong formula is off by ~100 %, not by a rounding's ~20 % here)."""
    torch.manual_seed(3)
    model = SampleCNN(3, 0.25, "mean", conv="fast").train()
    ref = copy.deepcopy(model)
    ref.conv = "reference"
    exact = copy.deepcopy(model).double()
    exact.conv = "reference"
    x = torch.randn(8, 1, 400)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, r = model(x), ref(x)
    g = torch.randn(h.shape)
    h.float().backward(g)
    r.float().backward(g)
    e = exact(x.double())
    e.backward(g.double())
    assert h.dtype == r.dtype
    torch.testing.assert_close(h.float(), r.float(), rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(h.double(), e, rtol=5e-2, atol=5e-2)
    conv_biases = {f"net.{i}.bias" for i, m in enumerate(model.net) if isinstance(m, nn.Conv1d)}
    error = lambda a, b: float((a.double() - b).norm() / b.norm())       # noqa: E731
    for (name, p), q, p64 in zip(model.named_parameters(), ref.parameters(), exact.parameters()):
        assert p.grad.dtype == torch.float32
        if name not in conv_biases:       # true gradient 0 under train-mode BatchNorm: rounding only
            assert error(p.grad, p64.grad) <= 2 * error(q.grad, p64.grad) + 0.02, name


def test_bf16_weight_gradient_is_summed_in_float32():
    """Under bf16 autocast the float32 weight's gradient, and weight_grad's on bf16 rows, are
    rounded no more than oneDNN's own bf16 convolution rounds it (block sums added up in bf16 were
    ~5x further off; measured on a real-music run, the encoder probed far worse)."""
    torch.manual_seed(5)
    x = torch.randn(8, 16, 1, 4096).relu().bfloat16().contiguous(memory_format=CL)
    g = (torch.randn(8, 16, 1, 4096) * 1e-3).bfloat16().contiguous(memory_format=CL)
    exact = weight_grad(x.double(), g.double(), 3)                       # (16, 16, 3)
    w = torch.zeros(16, 16, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv1d_cl(x, w).backward(g)
    assert w.grad.dtype == torch.float32
    w_bf16 = torch.zeros(16, 16, 3, dtype=torch.bfloat16, requires_grad=True)   # oneDNN, bf16 throughout
    F.conv1d(x.flatten(2), w_bf16, padding=1).backward(g.flatten(2))
    error = lambda w: float((w.double() - exact).norm() / exact.norm())       # noqa: E731
    assert error(w.grad) <= 1.5 * error(w_bf16.grad), (error(w.grad), error(w_bf16.grad))
    assert error(weight_grad(x, g, 3, block=256)) <= 1.5 * error(w_bf16.grad)   # 128 blocks summed


def test_stem_gradients_are_summed_per_clip_in_float32():
    """The strided stem's weight and bias gradients: one product per clip, summed in float32. In
    float32 that is closer to the float64 reference than one long product over every frame of the
    batch (oneDNN's own stride-3 convolution, here ~5e-6); under bf16 autocast as close as oneDNN's
    bf16 convolution; the input's gradient too."""
    torch.manual_seed(6)
    x = torch.randn(16, 1, 1, 3 * 8192)
    g = torch.randn(16, 32, 1, 8192)
    w0, b0 = torch.randn(32, 1, 3) * 0.5, torch.randn(32) * 0.1

    def grads(dtype, autocast=False):
        w, b, xx = (t.to(dtype, copy=True).requires_grad_() for t in (w0, b0, x))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = strided_stem(xx, w, b)
        assert y.is_contiguous(memory_format=CL)
        y.backward(g.to(y.dtype))
        return w.grad, b.grad, xx.grad

    def library(dtype):                                         # F.conv1d, stride 3
        w, b = (t.to(dtype, copy=True).requires_grad_() for t in (w0, b0))
        F.conv1d(x.flatten(2).to(dtype), w, b, stride=3).backward(g.flatten(2).to(dtype))
        return w.grad, b.grad

    exact = grads(torch.float64)
    error = lambda a, r: float((a.double() - r).norm() / r.norm())       # noqa: E731
    for ours, ref in zip(grads(torch.float32), exact):
        assert error(ours, ref) < 1e-6
    bf16 = grads(torch.float32, autocast=True)
    for ours, theirs, ref in zip(bf16, library(torch.bfloat16), exact):
        assert ours.dtype == torch.float32
        assert error(ours, ref) <= 1.5 * error(theirs, ref), (error(ours, ref), error(theirs, ref))
    assert error(bf16[2], exact[2]) < 1e-2


def test_checkpoints_of_the_old_formulation_load_and_agree():
    """A state dict of CLMR's stack (nn.Conv1d weights (out, in, 3), nn.BatchNorm1d buffers) loads
    strictly into today's SampleCNN and gives the same embedding."""
    torch.manual_seed(4)
    old = reference_stack(SampleCNN(3, 0.25, "flatten")).eval()
    for m in old.modules():               # non-trivial running statistics, as after training
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    state = {f"net.{k}": v for k, v in old.state_dict().items()}
    x = torch.randn(3, 1, 81)
    for conv in ("reference", "fast"):
        new = SampleCNN(3, 0.25, "flatten", conv=conv).eval()
        new.load_state_dict(state, strict=True)
        assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in state.items()}
        with torch.no_grad():
            torch.testing.assert_close(new(x), old(x).flatten(1), rtol=1e-4, atol=1e-5)


def test_conv_is_checked():
    with pytest.raises(ValueError, match="conv"):
        SampleCNN(3, 0.25, "mean", conv="nhwc")


def test_keep_freed_memory_applies_on_glibc_and_can_be_undone():
    import platform
    from ssl_min.runtime.cpu_memory import keep_freed_memory
    state = keep_freed_memory()
    assert keep_freed_memory() == state
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert state.startswith("glibc malloc keeps freed memory"), state
        assert keep_freed_memory(False).startswith("glibc malloc with its default settings")
        assert keep_freed_memory(True) == state


@pytest.mark.parametrize("n_blocks,width,pool", [(3, 0.25, "flatten"), (4, 0.5, "mean")])
def test_block_outputs_agree_between_layouts_and_end_in_the_output(n_blocks, width, pool):
    """Every post-ReLU activation (stem, each pooled block, last conv), in both formulations."""
    torch.manual_seed(0)
    fast = SampleCNN(n_blocks, width, pool, conv="fast").double().eval()
    ref = copy.deepcopy(fast)
    ref.conv = "reference"
    x = torch.randn(3, 1, 3 ** (n_blocks + 1) * (2 if pool == "mean" else 1), dtype=torch.float64)
    got, want = fast.block_outputs(x), ref.block_outputs(x)
    assert len(got) == len(want) == n_blocks + 2
    ch = [max(1, round(c * width)) for c in CLMR_CHANNELS]
    shapes = [(3, ch[i], x.shape[-1] // 3 ** (i + 1)) for i in range(n_blocks + 1)] + [(3, ch[-1], x.shape[-1] // 3 ** (n_blocks + 1))]
    for g, w, shape in zip(got, want, shapes):
        assert g.shape == w.shape == shape
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
        assert (w >= 0).all()                                   # after a ReLU
    out = fast(x)
    torch.testing.assert_close(out, want[-1].mean(-1) if pool == "mean" else want[-1].flatten(1))


def ref_layout(model):
    ref = copy.deepcopy(model)
    ref.conv = "reference"
    return ref


def test_block_stats_are_each_blocks_mean_and_std_over_time():
    from ssl_min.evaluate.blocks import BlockStats
    torch.manual_seed(0)
    enc = SampleCNN(3, 0.25, "mean", conv="fast").double().eval()
    x = torch.randn(2, 1, 3 ** 4 * 2, dtype=torch.float64)
    with torch.no_grad():
        feats, blocks = BlockStats(enc)(x), ref_layout(enc).block_outputs(x)
    want = []
    for h in blocks:                              # numpy, per block: mean and population std
        a = h.numpy()
        want += [a.mean(-1)] + ([a.std(-1)] if a.shape[-1] > 1 else [])
    np.testing.assert_allclose(feats.numpy(), np.concatenate(want, 1), rtol=1e-9, atol=1e-12)
    assert feats.shape == (2, sum(w.shape[1] for w in want))
    assert list(BlockStats(enc).parameters()) == list(enc.parameters())   # a view: nothing of its own
