#!/usr/bin/python3
"""Writes conv2d.txt: small conv2d cases (stride, padding, dilation, groups, bias) with
PyTorch's forward output and its gradients for a given dL/dy, in the format of
tests/support/golden.h. Run from anywhere: /usr/bin/python3 make_conv2d.py"""
import os

import torch
import torch.nn.functional as F

# (name, N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CASES = [
    ("basic_3x3", 2, 3, 6, 5, 4, 3, 3, (1, 1), (0, 0), (1, 1), 1, True),
    ("stride2_pad1", 2, 3, 7, 6, 5, 3, 3, (2, 2), (1, 1), (1, 1), 1, True),
    ("stride_3x1_pad_2x0_kernel_2x3", 1, 2, 9, 7, 3, 2, 3, (3, 1), (2, 0), (1, 1), 1, False),
    ("dilation2", 2, 2, 8, 7, 3, 3, 3, (1, 1), (2, 2), (2, 2), 1, True),
    ("dilation_1x2_stride_2x1", 1, 3, 7, 9, 2, 3, 2, (2, 1), (1, 2), (1, 2), 1, True),
    ("groups2", 2, 4, 5, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1), 2, True),
    ("depthwise", 2, 5, 6, 5, 5, 3, 3, (1, 1), (1, 1), (1, 1), 5, True),
    ("depthwise_multiplier2_stride2", 1, 3, 7, 7, 6, 3, 3, (2, 2), (1, 1), (1, 1), 3, False),
    ("groups3_pointwise", 2, 6, 4, 3, 9, 1, 1, (1, 1), (0, 0), (1, 1), 3, True),
    ("padding_beyond_kernel", 1, 2, 3, 4, 3, 2, 2, (2, 3), (3, 2), (1, 1), 1, True),
]


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def main():
    torch.manual_seed(20240603)
    lines = [
        "# conv2d golden cases written by tests/reference/golden/make_conv2d.py",
        "# with torch %s (float32, CPU); do not edit by hand." % torch.__version__,
    ]
    for name, n, c, h, w, k, r, s, stride, padding, dilation, groups, has_bias in CASES:
        x = torch.rand(n, c, h, w) * 2 - 1
        weight = torch.rand(k, c // groups, r, s) * 2 - 1
        bias = torch.rand(k) * 2 - 1 if has_bias else None
        x.requires_grad_(True)
        weight.requires_grad_(True)
        if bias is not None:
            bias.requires_grad_(True)
        y = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        dL_dy = torch.rand(y.shape) * 2 - 1
        y.backward(dL_dy)
        lines.append("case " + name)
        lines.append("int stride %d %d" % stride)
        lines.append("int padding %d %d" % padding)
        lines.append("int dilation %d %d" % dilation)
        lines.append("int groups %d" % groups)
        lines.append(tensor_line("x", x))
        lines.append(tensor_line("weight", weight))
        if bias is not None:
            lines.append(tensor_line("bias", bias))
        lines.append(tensor_line("dL_dy", dL_dy))
        lines.append(tensor_line("y", y))
        lines.append(tensor_line("dL_dx", x.grad))
        lines.append(tensor_line("dL_dweight", weight.grad))
        if bias is not None:
            lines.append(tensor_line("dL_dbias", bias.grad))
        lines.append("end")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv2d.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
