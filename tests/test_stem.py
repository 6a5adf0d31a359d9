"""The stem with its BatchNorm folded into the product (ssl_min/models/stem.py) against the modules it
replaces, nn.Conv1d(stride 3) + nn.BatchNorm1d + ReLU: outputs, every gradient (the input's too),
the running statistics, in training and in eval mode, in float64."""
import pytest
import torch
import torch.nn as nn

from ssl_min.models.conv import CL
from ssl_min.models.stem import stem_bn_relu


def modules(C=16, momentum=0.1, seed=0):
    torch.manual_seed(seed)
    conv, bn = nn.Conv1d(1, C, 3, stride=3).double(), nn.BatchNorm1d(C, momentum=momentum).double()
    with torch.no_grad():                       # away from the init: gamma of both signs, a shifted mean
        bn.weight.copy_(torch.randn(C)), bn.bias.copy_(torch.randn(C))
        bn.running_mean.copy_(torch.randn(C)), bn.running_var.copy_(torch.rand(C) + 0.5)
    return conv, bn


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("T", [3 * 50, 3 * 50 + 2])          # a tail shorter than a frame is dropped, as by Conv1d
def test_folded_stem_equals_conv_batchnorm_relu_in_training(momentum, T):
    conv, bn = modules(momentum=momentum)
    conv2, bn2 = modules(momentum=momentum)
    bn.train(), bn2.train()
    x = (torch.randn(6, 1, T, dtype=torch.float64) * 0.3 + 0.05).requires_grad_()   # a DC offset: m != 0
    x2 = x.detach().clone().requires_grad_()
    for step in range(2):                       # twice: the running statistics' update, also with momentum=None
        ref = torch.relu(bn(conv(x)))                                          # (B, C, L)
        ours = stem_bn_relu(x2.unsqueeze(2), conv2, bn2)                       # (B, C, 1, L) channels-last
        assert ours.is_contiguous(memory_format=CL)
        torch.testing.assert_close(ours.squeeze(2), ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ref)
    ref.backward(g)
    ours.squeeze(2).backward(g)
    for a, b, name in [(x2, x, "input"), (conv2.weight, conv.weight, "conv weight"), (bn2.weight, bn.weight, "gamma"),
                       (bn2.bias, bn.bias, "beta")]:
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-10, msg=name)
    # a conv bias before train-mode BatchNorm has a true gradient of 0 (the reference: rounding)
    assert conv2.bias.grad.abs().max() <= 1e-9 * conv.weight.grad.abs().max() + 1e-12
    assert conv.bias.grad.abs().max() <= 1e-9 * conv.weight.grad.abs().max() + 1e-12
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn2, name), getattr(bn, name), rtol=1e-12, atol=1e-12, msg=name)


def test_folded_stem_in_eval_mode_uses_the_running_statistics():
    conv, bn = modules()
    bn.eval()
    x = torch.randn(3, 1, 90, dtype=torch.float64)
    before = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    torch.testing.assert_close(stem_bn_relu(x.unsqueeze(2), conv, bn).squeeze(2), torch.relu(bn(conv(x))),
                               rtol=1e-10, atol=1e-10)
    for a, b in zip(before, (bn.running_mean, bn.running_var, bn.num_batches_tracked)):
        assert torch.equal(a, b)


def test_folded_stem_under_bf16_autocast_is_as_close_as_the_modules():
    """bf16: the folded product against float64, no further than Conv1d + BatchNorm under the same
    autocast (outputs and the weight's gradient)."""
    conv64, bn64 = modules(C=32)
    x = torch.randn(16, 1, 3 * 2000, dtype=torch.float64)
    exact = torch.relu(bn64(conv64(x)))
    g = torch.randn_like(exact)
    exact.backward(g)
    errors = {}
    for name in ("ours", "modules"):
        conv, bn = modules(C=32)
        conv, bn = conv.float(), bn.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = stem_bn_relu(x.float().unsqueeze(2), conv, bn).squeeze(2) if name == "ours" else torch.relu(bn(conv(x.float())))
        y.float().backward(g.float())
        errors[name] = [float((a.double() - b).norm() / b.norm()) for a, b in
                        [(y.detach(), exact.detach()), (conv.weight.grad, conv64.weight.grad), (bn.weight.grad, bn64.weight.grad)]]
    for ours, theirs in zip(errors["ours"], errors["modules"]):
        assert ours <= 1.5 * theirs + 1e-4, errors
