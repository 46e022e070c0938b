#!/usr/bin/python3
"""Writes batch_norm.txt: small BatchNorm2d cases with PyTorch's training forward (output,
batch mean and invstd as saved for the backward, updated running statistics), the
gradients for a given dL/dy, and the eval forward with the updated running statistics,
for the affine variants weight_and_bias, bias_only (weight fixed at 1) and none, in the
format of tests/support/golden.h. Run from anywhere: /usr/bin/python3 make_batch_norm.py"""
import os

import torch

AFFINE = {"none": 0, "bias_only": 1, "weight_and_bias": 2}

# (name, N, C, H, W, affine, eps, momentum, offset added to x)
CASES = [
    ("weight_and_bias", 2, 3, 4, 5, "weight_and_bias", 1e-5, 0.1, 0.0),
    ("bias_only", 3, 4, 3, 2, "bias_only", 1e-5, 0.1, 0.0),
    ("no_affine_momentum03_eps1e-3", 2, 5, 3, 3, "none", 1e-3, 0.3, 0.0),
    ("spatial_1x1_batch3", 3, 6, 1, 1, "weight_and_bias", 1e-5, 0.1, 0.0),
    ("batch1_non_square", 1, 2, 3, 7, "weight_and_bias", 1e-5, 0.1, 0.0),
    ("channels33", 2, 33, 2, 3, "weight_and_bias", 1e-5, 0.1, 0.0),
    ("mean_far_from_zero", 2, 2, 4, 4, "weight_and_bias", 1e-5, 0.1, 100.0),
]


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def main():
    torch.manual_seed(20240612)
    lines = [
        "# batch_norm golden cases written by tests/reference/golden/make_batch_norm.py",
        "# with torch %s (float32, CPU); do not edit by hand." % torch.__version__,
        "# affine: 0 none, 1 bias_only, 2 weight_and_bias. running_mean_in/running_var_in are",
        "# the running statistics before the training step, running_mean/running_var after;",
        "# y_eval is the eval forward of x with the updated running statistics.",
    ]
    for name, n, c, h, w, affine, eps, momentum, offset in CASES:
        bn = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=(affine != "none"))
        with torch.no_grad():
            bn.running_mean.copy_(torch.rand(c) * 2 - 1)
            bn.running_var.copy_(torch.rand(c) + 0.5)
            if affine != "none":
                bn.weight.copy_(torch.rand(c) + 0.5)
                bn.bias.copy_(torch.rand(c) * 2 - 1)
            if affine == "bias_only":
                bn.weight.fill_(1.0)
                bn.weight.requires_grad_(False)
        running_mean_in = bn.running_mean.clone()
        running_var_in = bn.running_var.clone()
        x = ((torch.rand(n, c, h, w) * 2 - 1) * 1.5 + offset).requires_grad_(True)
        bn.train()
        y = bn(x)
        # The statistics PyTorch saves for the backward.
        mean = x.detach().mean(dim=(0, 2, 3))
        invstd = 1.0 / torch.sqrt(x.detach().var(dim=(0, 2, 3), unbiased=False) + eps)
        dL_dy = torch.rand(y.shape) * 2 - 1
        y.backward(dL_dy)
        bn.eval()
        with torch.no_grad():
            y_eval = bn(x)
        lines.append("case " + name)
        lines.append("int affine %d" % AFFINE[affine])
        lines.append("float eps %.9g" % eps)
        lines.append("float momentum %.9g" % momentum)
        lines.append(tensor_line("x", x))
        if affine == "weight_and_bias":
            lines.append(tensor_line("weight", bn.weight))
        if affine != "none":
            lines.append(tensor_line("bias", bn.bias))
        lines.append(tensor_line("running_mean_in", running_mean_in))
        lines.append(tensor_line("running_var_in", running_var_in))
        lines.append(tensor_line("dL_dy", dL_dy))
        lines.append(tensor_line("y", y))
        lines.append(tensor_line("mean", mean))
        lines.append(tensor_line("invstd", invstd))
        lines.append(tensor_line("running_mean", bn.running_mean))
        lines.append(tensor_line("running_var", bn.running_var))
        lines.append(tensor_line("dL_dx", x.grad))
        if affine == "weight_and_bias":
            lines.append(tensor_line("dL_dweight", bn.weight.grad))
        if affine != "none":
            lines.append(tensor_line("dL_dbias", bn.bias.grad))
        lines.append(tensor_line("y_eval", y_eval))
        lines.append("end")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "batch_norm.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
