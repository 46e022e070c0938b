#!/usr/bin/python3
"""Writes init.txt: what torch.nn.init computes for Strata's initialisers to match, in the
format of tests/support/golden.h. The random values cannot match (PyTorch's generator is
not Strata's Philox stream), so the fixture holds what must: fans, gains, the uniform
bounds and normal standard deviations PyTorch passes to uniform_/normal_ (caught by
wrapping those two methods, so nothing here re-derives PyTorch's formulas), the bounds of
nn.Conv2d's and nn.Linear's default initialisation, and dirac_ weights, which are exact.
Case names carry what a float cannot: kaiming_uniform/<nonlinearity>/<mode>/<n>.
Run from anywhere: /usr/bin/python3 make_init.py"""
import math
import os

import torch
import torch.nn as nn

FAN_SHAPES = [(5, 3), (1, 1), (64, 3, 3, 3), (10, 4, 5), (6, 2, 3, 4, 5), (7, 0, 3, 3), (3, 8, 1, 1)]

GAINS = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
         ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
         ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0.0), ("leaky_relu", math.sqrt(5)),
         ("selu", None)]

# (shape, a, mode, nonlinearity)
KAIMING = [((64, 3, 3, 3), 0.0, "fan_in", "relu"), ((64, 32, 3, 3), 0.0, "fan_out", "relu"),
           ((10, 4, 5), math.sqrt(5), "fan_in", "leaky_relu"), ((128, 300), 0.1, "fan_out", "leaky_relu"),
           ((16, 8, 5, 5), 0.0, "fan_in", "tanh"), ((7, 9), 0.0, "fan_in", "linear")]

# (shape, gain)
XAVIER = [((64, 3, 3, 3), 1.0), ((128, 300), 0.5), ((10, 4, 5), math.sqrt(2.0)), ((3, 2, 3, 4, 5), 5.0 / 3)]

# nn.Conv2d(in, out, kernel, groups) and nn.Linear(in, out)
CONV2D = [(3, 64, 3, 1), (64, 128, 3, 1), (32, 32, 3, 4), (16, 10, (1, 5), 2)]
LINEAR = [(512, 10), (7, 3), (1, 1)]

# (shape, groups): K == C, K > C, K < C, groups, 3-D and 5-D, even kernels (centre = size // 2).
DIRAC = [((3, 3, 3, 3), 1), ((5, 3, 3, 3), 1), ((2, 4, 1, 3), 1), ((6, 2, 3, 3), 2), ((6, 3, 2, 4), 3),
         ((8, 3, 3, 3), 2), ((4, 3, 5), 1), ((4, 2, 2, 3, 3), 2)]


def ints(key, values):
    return "int %s %s" % (key, " ".join(str(v) for v in values))


def double(key, value):
    return "float %s %.17g" % (key, value)


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.reshape(-1).tolist())
    return "tensor %s %s : %s" % (key, " ".join(str(d) for d in t.shape), values)


class Spy:
    """Records the arguments of Tensor.uniform_ and Tensor.normal_ while active."""

    def __init__(self):
        self.calls = []

    def __enter__(self):
        self.uniform, self.normal = torch.Tensor.uniform_, torch.Tensor.normal_
        spy = self

        def uniform_(tensor, a=0.0, b=1.0, *args, **kwargs):
            spy.calls.append(("uniform", tuple(tensor.shape), a, b))
            return spy.uniform(tensor, a, b, *args, **kwargs)

        def normal_(tensor, mean=0.0, std=1.0, *args, **kwargs):
            spy.calls.append(("normal", tuple(tensor.shape), mean, std))
            return spy.normal(tensor, mean, std, *args, **kwargs)

        torch.Tensor.uniform_, torch.Tensor.normal_ = uniform_, normal_
        return self

    def __exit__(self, *exc):
        torch.Tensor.uniform_, torch.Tensor.normal_ = self.uniform, self.normal


def only_call(spy, kind):
    assert len(spy.calls) == 1 and spy.calls[0][0] == kind, spy.calls
    return spy.calls[0]


def symmetric_bound(call):
    _, _, low, high = call
    assert low == -high, call
    return high


def main():
    torch.manual_seed(20240612)
    lines = [
        "# init golden cases written by tests/reference/golden/make_init.py",
        "# with torch %s; do not edit by hand." % torch.__version__,
    ]
    for i, shape in enumerate(FAN_SHAPES):
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        lines += ["case fans/%d" % i, ints("shape", shape), ints("fan_in", [fan_in]), ints("fan_out", [fan_out]), "end"]

    lines.append("case gains")
    for name, param in GAINS:
        key = name if param is None else "%s/%r" % (name, param)
        lines.append(double(key, nn.init.calculate_gain(name, param)))
    lines.append("end")

    for i, (shape, a, mode, nonlinearity) in enumerate(KAIMING):
        for kind, function in (("uniform", nn.init.kaiming_uniform_), ("normal", nn.init.kaiming_normal_)):
            with Spy() as spy:
                function(torch.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity)
            call = only_call(spy, kind)
            lines += ["case kaiming_%s/%s/%s/%d" % (kind, nonlinearity, mode, i), ints("shape", shape), double("a", a)]
            lines.append(double("bound", symmetric_bound(call)) if kind == "uniform" else double("std", call[3]))
            lines.append("end")

    for i, (shape, gain) in enumerate(XAVIER):
        for kind, function in (("uniform", nn.init.xavier_uniform_), ("normal", nn.init.xavier_normal_)):
            with Spy() as spy:
                function(torch.empty(shape), gain=gain)
            call = only_call(spy, kind)
            lines += ["case xavier_%s/%d" % (kind, i), ints("shape", shape), double("gain", gain)]
            lines.append(double("bound", symmetric_bound(call)) if kind == "uniform" else double("std", call[3]))
            lines.append("end")

    modules = [("default_conv2d/%d" % i, lambda c=c: nn.Conv2d(c[0], c[1], c[2], groups=c[3])) for i, c in
               enumerate(CONV2D)]
    modules += [("default_linear/%d" % i, lambda c=c: nn.Linear(c[0], c[1])) for i, c in enumerate(LINEAR)]
    for name, make in modules:
        with Spy() as spy:
            module = make()
        assert [c[0] for c in spy.calls] == ["uniform", "uniform"], spy.calls
        weight_call, bias_call = spy.calls
        assert weight_call[1] == tuple(module.weight.shape) and bias_call[1] == tuple(module.bias.shape)
        lines += ["case " + name, ints("shape", module.weight.shape),
                  double("weight_bound", symmetric_bound(weight_call)),
                  double("bias_bound", symmetric_bound(bias_call)), "end"]

    for i, (shape, groups) in enumerate(DIRAC):
        weight = torch.full(shape, 7.0)  # dirac_ must overwrite every element
        nn.init.dirac_(weight, groups=groups)
        lines += ["case dirac/%d" % i, ints("groups", [groups]), tensor_line("weight", weight), "end"]

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
