#!/usr/bin/python3
"""Writes elementwise.txt: relu (including 0 and -0), gelu in both forms (including large
|x|) forward and backward, add with alpha, and concat along channels with its split
backward, from PyTorch, in the format of tests/support/golden.h. Dropout is not here: its
mask comes from Strata's own Philox stream, checked against a host recomputation instead.
Run from anywhere: /usr/bin/python3 make_elementwise.py"""
import os

import torch
import torch.nn.functional as F

# Values where the forms are delicate: the tails (where 1 + erf and 1 + tanh cancel), zero,
# and |x| large enough that x^3 is large but still finite in float32.
GELU_SPECIAL = [-1e4, -50.0, -10.0, -6.0, -5.0, -3.0, -1.0, -0.5, -1e-3, 0.0,
                1e-3, 0.5, 1.0, 3.0, 5.0, 6.0, 10.0, 50.0, 1e4]
RELU_SPECIAL = [-2.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 3.0]

# (name, shapes of the inputs, dim)
CONCAT_CASES = [
    ("concat_channels", [(2, 3, 2, 3), (2, 1, 2, 3), (2, 5, 2, 3)], 1),
    ("concat_channels_1x1", [(3, 2, 1, 1), (3, 3, 1, 1)], 1),
]


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def uniform(*shape):
    return torch.rand(*shape) * 2 - 1


def unary_case(lines, name, x, function, extra=()):
    x = x.clone().requires_grad_(True)
    y = function(x)
    dL_dy = uniform(*y.shape)
    y.backward(dL_dy)
    lines.append("case " + name)
    lines.extend(extra)
    lines.append(tensor_line("x", x))
    lines.append(tensor_line("dL_dy", dL_dy))
    lines.append(tensor_line("y", y))
    lines.append(tensor_line("dL_dx", x.grad))
    lines.append("end")


def main():
    torch.manual_seed(20240611)
    lines = [
        "# elementwise golden cases written by tests/reference/golden/make_elementwise.py",
        "# with torch %s (float32, CPU); do not edit by hand." % torch.__version__,
    ]
    relu_x = torch.cat([torch.tensor(RELU_SPECIAL), uniform(13)]).reshape(3, 7)
    unary_case(lines, "relu", relu_x, torch.relu)

    gelu_x = torch.cat([torch.tensor(GELU_SPECIAL), torch.randn(29) * 3]).reshape(4, 12)
    for approximate in ("none", "tanh"):
        unary_case(lines, "gelu_" + approximate, gelu_x, lambda x: F.gelu(x, approximate=approximate),
                   ["int tanh %d" % (approximate == "tanh")])

    for name, alpha in (("add", 1.0), ("add_alpha", -0.75)):
        a = uniform(2, 3, 2, 3)
        b = uniform(2, 3, 2, 3)
        lines.append("case " + name)
        lines.append("float alpha %.9g" % alpha)
        lines.append(tensor_line("a", a))
        lines.append(tensor_line("b", b))
        lines.append(tensor_line("y", torch.add(a, b, alpha=alpha)))
        lines.append("end")

    for name, shapes, dim in CONCAT_CASES:
        xs = [uniform(*shape).requires_grad_(True) for shape in shapes]
        y = torch.cat(xs, dim)
        dL_dy = uniform(*y.shape)
        y.backward(dL_dy)
        lines.append("case " + name)
        lines.append("int dim %d" % dim)
        lines.append("int inputs %d" % len(xs))
        for i, x in enumerate(xs):
            lines.append(tensor_line("x%d" % i, x))
        lines.append(tensor_line("y", y))
        lines.append(tensor_line("dL_dy", dL_dy))
        for i, x in enumerate(xs):
            lines.append(tensor_line("dL_dx%d" % i, x.grad))
        lines.append("end")

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "elementwise.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
