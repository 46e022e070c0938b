#!/usr/bin/python3
"""Writes pool2d.txt: small max_pool2d, avg_pool2d, adaptive_avg_pool2d and
adaptive_max_pool2d cases with PyTorch's forward output, its indices (max pools) and dL/dx
for a given dL/dy, in the format of tests/support/golden.h. A case's name starts with its
op. Run from anywhere: /usr/bin/python3 make_pool2d.py"""
import os

import torch
import torch.nn.functional as F

NAN = float("nan")

# (name, x shape, kernel, stride, padding, dilation, ceil_mode, special input)
MAX_CASES = [
    ("k2", (1, 2, 4, 6), (2, 2), None, (0, 0), (1, 1), False, None),
    ("k3_s2_p1", (2, 3, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), False, None),
    # H = 5: the ceil_mode window that would start in the right padding is dropped.
    ("k2_s2_p1_ceil", (1, 2, 5, 4), (2, 2), (2, 2), (1, 1), (1, 1), True, None),
    ("k3_s2_ceil", (1, 1, 6, 8), (3, 3), (2, 2), (0, 0), (1, 1), True, None),
    ("k3_s3_ceil_partial_windows", (1, 2, 7, 5), (3, 3), (3, 3), (0, 1), (1, 1), True, None),
    ("dilation2_p1", (1, 2, 7, 6), (3, 3), (1, 1), (1, 1), (2, 2), False, None),
    ("k3x2_s2x1_p1x1_d2x1_ceil", (2, 1, 10, 7), (3, 2), (2, 1), (1, 1), (2, 1), True, None),
    ("global_5x4", (1, 3, 5, 4), (5, 4), None, (0, 0), (1, 1), False, None),
    ("k1_1x1", (2, 3, 1, 1), (1, 1), None, (0, 0), (1, 1), False, None),
    ("ties_constant", (1, 1, 4, 5), (2, 3), (1, 1), (1, 1), (1, 1), False, "ones"),
    ("nan", (1, 2, 4, 4), (2, 2), (1, 1), (0, 0), (1, 1), False, "nan"),
    # Windows whose every dilated tap falls in the padding: -inf (the indices differ: PyTorch
    # reports a position outside the plane there, Strata -1, so they are left out).
    ("dilation3_empty_windows", (1, 1, 2, 2), (2, 2), (1, 1), (1, 1), (3, 3), False, "no_indices"),
]

# (name, x shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    ("k2", (1, 2, 4, 6), (2, 2), None, (0, 0), False, True, None),
    ("k3_s2_p1_include_pad", (2, 3, 7, 6), (3, 3), (2, 2), (1, 1), False, True, None),
    ("k3_s2_p1_exclude_pad", (2, 3, 7, 6), (3, 3), (2, 2), (1, 1), False, False, None),
    # The last ceil_mode window hangs past the padded input: its count_include_pad divisor
    # counts only up to H + p.
    ("k3_s2_p1_ceil_include_pad", (1, 2, 4, 5), (3, 3), (2, 2), (1, 1), True, True, None),
    ("k3_s2_p1_ceil_exclude_pad", (1, 2, 4, 5), (3, 3), (2, 2), (1, 1), True, False, None),
    ("k2_s2_p1_ceil_include_pad", (1, 1, 5, 3), (2, 2), (2, 2), (1, 1), True, True, None),
    ("k3x2_s1x2_p1x1", (1, 2, 5, 7), (3, 2), (1, 2), (1, 1), False, True, None),
    ("divisor_override3", (1, 2, 5, 5), (3, 3), (2, 2), (1, 1), True, True, 3),
    ("k1_1x1", (2, 3, 1, 1), (1, 1), None, (0, 0), False, True, None),
]

# (name, x shape, output size, special input)
ADAPTIVE_CASES = [
    ("5to3", (1, 2, 5, 5), (3, 3), None),
    ("7to3", (2, 1, 7, 7), (3, 3), None),
    ("3to5", (1, 2, 3, 3), (5, 5), None),
    ("7x5_to_3x2", (1, 3, 7, 5), (3, 2), None),
    ("6x4_to_4x6", (1, 1, 6, 4), (4, 6), None),
    ("global_6x5", (2, 3, 6, 5), (1, 1), None),
    ("1x1_to_2x3", (1, 2, 1, 1), (2, 3), None),
    ("identity_4x3", (1, 1, 4, 3), (4, 3), None),
    ("ties_constant", (1, 1, 5, 4), (3, 3), "ones"),
    ("nan", (1, 1, 5, 5), (3, 2), "nan"),
]


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def make_input(shape, special):
    if special == "ones":
        return torch.ones(shape)
    x = torch.rand(shape) * 2 - 1
    if special == "nan":
        flat = x.view(-1)
        flat[1] = NAN
        flat[2] = NAN  # two NaNs in some windows: the later one is the index
        flat[-2] = NAN
    return x


def pair_line(key, pair):
    return "int %s %d %d" % (key, pair[0], pair[1])


def run_case(lines, name, x, forward, with_indices=True):
    x.requires_grad_(True)
    y, indices = forward(x)
    dL_dy = torch.rand(y.shape) * 2 - 1
    lines.append(tensor_line("x", x))
    lines.append(tensor_line("y", y))
    if with_indices:
        if indices is not None:
            lines.append(tensor_line("indices", indices.float()))
        y.backward(dL_dy)
        lines.append(tensor_line("dL_dy", dL_dy))
        lines.append(tensor_line("dL_dx", x.grad))
    lines.append("end")


def main():
    torch.manual_seed(20240611)
    lines = [
        "# pool2d golden cases written by tests/reference/golden/make_pool2d.py",
        "# with torch %s (float32, CPU); do not edit by hand." % torch.__version__,
    ]
    for name, shape, kernel, stride, padding, dilation, ceil_mode, special in MAX_CASES:
        lines.append("case max_pool2d." + name)
        lines.append(pair_line("kernel", kernel))
        lines.append(pair_line("stride", stride or kernel))
        lines.append(pair_line("padding", padding))
        lines.append(pair_line("dilation", dilation))
        lines.append("int ceil_mode %d" % ceil_mode)
        run_case(lines, name, make_input(shape, special),
                 lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True),
                 with_indices=special != "no_indices")
    for name, shape, kernel, stride, padding, ceil_mode, include_pad, divisor in AVG_CASES:
        lines.append("case avg_pool2d." + name)
        lines.append(pair_line("kernel", kernel))
        lines.append(pair_line("stride", stride or kernel))
        lines.append(pair_line("padding", padding))
        lines.append("int ceil_mode %d" % ceil_mode)
        lines.append("int count_include_pad %d" % include_pad)
        lines.append("int divisor_override %d" % (divisor or 0))
        run_case(lines, name, make_input(shape, None),
                 lambda x: (F.avg_pool2d(x, kernel, stride, padding, ceil_mode, include_pad, divisor), None))
    for name, shape, output_size, special in ADAPTIVE_CASES:
        if special is None:
            lines.append("case adaptive_avg_pool2d." + name)
            lines.append(pair_line("output_size", output_size))
            run_case(lines, name, make_input(shape, None),
                     lambda x: (F.adaptive_avg_pool2d(x, output_size), None))
        lines.append("case adaptive_max_pool2d." + name)
        lines.append(pair_line("output_size", output_size))
        run_case(lines, name, make_input(shape, special),
                 lambda x: F.adaptive_max_pool2d(x, output_size, return_indices=True))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool2d.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
