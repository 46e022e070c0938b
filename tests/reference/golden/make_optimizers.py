#!/usr/bin/python3
"""Writes optimizers.txt: three steps of torch.optim.SGD (Nesterov with momentum 0.85 and
weight decay; dampening with maximize; plain) and torch.optim.AdamW (plain; amsgrad with
maximize) on small tensors with fixed gradients, and torch.nn.utils.clip_grad_norm_ (L2
clipping and not, infinity norm), in the format of tests/support/golden.h.

Keys: paramK (before the first step), gradK_stepS, paramK_stepS (after step S); bufferK,
exp_avgK, exp_avg_sqK, max_exp_avg_sqK after the last step. Clip cases: gradK, norm,
clippedK. Run from anywhere: /usr/bin/python3 make_optimizers.py"""
import os

import torch

SHAPES = [(3, 4), (5,)]
STEPS = 3

# (name, keyword arguments of torch.optim.SGD)
SGD_CASES = [
    ("sgd_nesterov", dict(lr=0.1, momentum=0.85, dampening=0.0, weight_decay=0.01, nesterov=True, maximize=False)),
    ("sgd_dampening_maximize",
     dict(lr=0.05, momentum=0.9, dampening=0.25, weight_decay=0.1, nesterov=False, maximize=True)),
    ("sgd_plain", dict(lr=0.2, momentum=0.0, dampening=0.0, weight_decay=0.05, nesterov=False, maximize=False)),
]

# (name, keyword arguments of torch.optim.AdamW)
ADAMW_CASES = [
    ("adamw", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, amsgrad=False, maximize=False)),
    ("adamw_amsgrad_maximize",
     dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, amsgrad=True, maximize=True)),
]

# (name, max_norm, norm_type)
CLIP_CASES = [
    ("clip_l2", 1.0, 2.0),
    ("clip_l2_not_needed", 100.0, 2.0),
    ("clip_infinity", 0.5, float("inf")),
]


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def uniform(*shape):
    return torch.rand(*shape) * 2 - 1


def optimizer_case(lines, name, make_optimizer, settings, state_keys):
    params = [torch.nn.Parameter(uniform(*shape)) for shape in SHAPES]
    lines.append("case " + name)
    lines.append("int tensors %d" % len(params))
    lines.append("int steps %d" % STEPS)
    for key, value in settings:
        lines.append("%s %s %r" % ("int" if isinstance(value, bool) else "float", key,
                                   int(value) if isinstance(value, bool) else value))
    for k, p in enumerate(params):
        lines.append(tensor_line("param%d" % k, p))
    optimizer = make_optimizer(params)
    for step in range(1, STEPS + 1):
        for k, p in enumerate(params):
            p.grad = uniform(*p.shape)
            lines.append(tensor_line("grad%d_step%d" % (k, step), p.grad))
        optimizer.step()
        for k, p in enumerate(params):
            lines.append(tensor_line("param%d_step%d" % (k, step), p))
    for k, p in enumerate(params):
        for state_key, golden_key in state_keys:
            lines.append(tensor_line("%s%d" % (golden_key, k), optimizer.state[p][state_key]))
    lines.append("end")


def main():
    torch.manual_seed(20240717)
    lines = [
        "# optimizer golden cases written by tests/reference/golden/make_optimizers.py",
        "# with torch %s (float32, CPU, single-tensor implementations); do not edit by hand." % torch.__version__,
    ]
    for name, kwargs in SGD_CASES:
        settings = [(key, kwargs[key]) for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov",
                                                    "maximize")]
        state_keys = [("momentum_buffer", "buffer")] if kwargs["momentum"] != 0 else []
        optimizer_case(lines, name, lambda params: torch.optim.SGD(params, foreach=False, **kwargs), settings,
                       state_keys)
    for name, kwargs in ADAMW_CASES:
        settings = [("lr", kwargs["lr"]), ("beta1", kwargs["betas"][0]), ("beta2", kwargs["betas"][1]),
                    ("eps", kwargs["eps"]), ("weight_decay", kwargs["weight_decay"]),
                    ("amsgrad", kwargs["amsgrad"]), ("maximize", kwargs["maximize"])]
        state_keys = [("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq")]
        if kwargs["amsgrad"]:
            state_keys.append(("max_exp_avg_sq", "max_exp_avg_sq"))
        optimizer_case(lines, name, lambda params: torch.optim.AdamW(params, foreach=False, **kwargs), settings,
                       state_keys)

    for name, max_norm, norm_type in CLIP_CASES:
        params = [torch.nn.Parameter(torch.zeros(*shape)) for shape in [(3, 4), (5,), (2, 3, 2)]]
        lines.append("case " + name)
        lines.append("int tensors %d" % len(params))
        lines.append("int infinity %d" % (norm_type == float("inf")))
        lines.append("float max_norm %r" % max_norm)
        for k, p in enumerate(params):
            p.grad = uniform(*p.shape) * 2
            lines.append(tensor_line("grad%d" % k, p.grad))
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        lines.append(tensor_line("norm", norm))
        for k, p in enumerate(params):
            lines.append(tensor_line("clipped%d" % k, p.grad))
        lines.append("end")

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizers.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
