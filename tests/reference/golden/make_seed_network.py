#!/usr/bin/python3
"""Writes seed_network.txt: the seed network (conv-ReLU-maxpool-conv-ReLU-maxpool-adaptive
avg pool-flatten-linear, as the nn.Sequential below) with PyTorch's default initialisation,
trained for three steps of SGD with Nesterov momentum and weight decay on three fixed
batches, in the format of tests/support/golden.h. The C++ test loads the initial weights by
name, so it does not depend on PyTorch's generator.

One case, "seed_network". Keys (NAME is a state_dict key: 0.weight, 0.bias, 3.weight, ...):
  int input N C H W, int classes, int steps; float lr, momentum, weight_decay; int nesterov
  tensor initial/NAME                 the parameters before the first step
  tensor x_stepS, int targets_stepS   the batch of step S (1-based)
  tensor logits_step1                 the first forward's output
  tensor loss_stepS                   the loss of step S, before its update ((), mean)
  tensor grad/NAME                    dL/dNAME of the first backward
  tensor stepS/NAME                   the parameters after step S

The run is float32 (as Strata trains) and is checked against the same run in float64: the
script fails unless every recorded value agrees with float64 within half the tolerance the
C++ test uses (ABS, REL below), and unless no ReLU input lies near 0 and no max-pool window
has a near tie (either would let two correct float32 implementations take different
branches). Each step is zero_grad, forward, backward, step, as a training loop does.
Run from anywhere: /usr/bin/python3 make_seed_network.py"""
import os

import torch
import torch.nn.functional as F

INPUT = (5, 3, 11, 10)  # odd sizes: both max pools drop a row or column (11x10 -> 5x5 -> 2x2)
CLASSES = 10
STEPS = 3
SGD = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
# float32 against float64: |f32 - f64| <= ABS * max|f64 of the tensor| + REL * |f64|, where
# the parameters after a step are compared as their change since the start (what the steps
# did, rather than what the weights were). The C++ test compares Strata's float32 with these
# values at twice this.
ABS, REL = 1e-5, 1e-4
# Margins below which float32 rounding could flip a branch, relative to the layer's largest
# value: about 100 times the rounding of a float32 dot product of 72 terms, and 10 times
# the relative drift of the weights between two float32 implementations after 3 steps.
RELU_MARGIN = 1e-5    # |pre-activation| of every nonzero ReLU input
TIE_MARGIN = 1e-5     # gap between a pool window's largest and second value


def seed_network():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, CLASSES))


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def train(model, batches):
    """Runs the steps; returns {key: tensor} of everything recorded."""
    record = {"initial/" + name: p.detach().clone() for name, p in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), foreach=False, **SGD)
    for step, (x, targets) in enumerate(batches, start=1):
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        if step == 1:
            record["logits_step1"] = logits.detach().clone()
            for name, p in model.named_parameters():
                record["grad/" + name] = p.grad.detach().clone()
        record["loss_step%d" % step] = loss.detach().clone()
        optimizer.step()
        for name, p in model.state_dict().items():
            record["step%d/%s" % (step, name)] = p.detach().clone()
    return record


def check_margins(model, x):
    """Fails when a ReLU input is near 0 or a max-pool window nearly ties (in float64)."""
    h = x
    for layer in model:
        if isinstance(layer, torch.nn.ReLU):
            scale = h.abs().max()
            near_zero = (h.abs() < RELU_MARGIN * scale) & (h != 0)
            assert not near_zero.any(), "a ReLU input lies within %g of 0" % (RELU_MARGIN * scale)
        if isinstance(layer, torch.nn.MaxPool2d):
            n, c, height, width = h.shape
            windows = h[:, :, :height // 2 * 2, :width // 2 * 2].reshape(n, c, height // 2, 2, width // 2, 2)
            windows = windows.permute(0, 1, 2, 4, 3, 5).reshape(-1, 4)
            top2 = windows.topk(2, dim=1).values
            # Windows of zeros (all ReLU-clipped) tie harmlessly: no gradient passes a ReLU at 0.
            live = top2[:, 0] > 0
            gap = (top2[:, 0] - top2[:, 1])[live]
            assert (gap > TIE_MARGIN * h.abs().max()).all(), "a max-pool window nearly ties"
        h = layer(h)


def main():
    torch.manual_seed(20240801)
    model32 = seed_network()  # PyTorch's default init: kaiming_uniform(a=sqrt(5)) weights, fan-in biases
    batches = [(torch.randn(*INPUT), torch.randint(0, CLASSES, (INPUT[0],))) for _ in range(STEPS)]

    model64 = seed_network().double()
    model64.load_state_dict({k: v.double() for k, v in model32.state_dict().items()})
    batches64 = [(x.double(), t) for x, t in batches]

    record = train(model32, batches)
    record64 = train(model64, batches64)
    worst = 0.0
    for key, value in record.items():
        exact = record64[key]
        value = value.double()
        if key.startswith("step"):  # a step's parameters are compared as their change since the start
            initial = record["initial/" + key.split("/", 1)[1]].double()
            value, exact = value - initial, exact - initial
        bound = ABS * exact.abs().max() + REL * exact.abs()
        excess = ((value - exact).abs() / bound).max().item()
        assert excess <= 1.0, "%s: float32 differs from float64 by %g of the tolerance" % (key, excess)
        worst = max(worst, excess)
    print("float32 vs float64: worst difference %.3g of the tolerance" % worst)

    # The margins along the float64 trajectory, at the weights each step's forward saw.
    with torch.no_grad():
        check = seed_network().double()
        for step, (x, _) in enumerate(batches64, start=1):
            prefix = "initial/" if step == 1 else "step%d/" % (step - 1)
            check.load_state_dict({name[len(prefix):]: v for name, v in record64.items() if name.startswith(prefix)})
            check_margins(check, x)

    lines = [
        "# seed network golden case written by tests/reference/golden/make_seed_network.py",
        "# with torch %s (float32, CPU, checked against float64); do not edit by hand." % torch.__version__,
        "case seed_network",
        "int input " + " ".join(str(d) for d in INPUT),
        "int classes %d" % CLASSES,
        "int steps %d" % STEPS,
        "float lr %r" % SGD["lr"],
        "float momentum %r" % SGD["momentum"],
        "float weight_decay %r" % SGD["weight_decay"],
        "int nesterov %d" % SGD["nesterov"],
    ]
    for step, (x, targets) in enumerate(batches, start=1):
        lines.append(tensor_line("x_step%d" % step, x))
        lines.append("int targets_step%d %s" % (step, " ".join(str(t) for t in targets.tolist())))
    lines += [tensor_line(key, value) for key, value in record.items()]
    lines.append("end")

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_network.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
