#!/usr/bin/python3
"""Writes lr_schedules.txt: the learning rates torch.optim.lr_scheduler gives, step by step,
in the format of tests/support/golden.h. Each case is named by the Strata schedule text
(strata/layers/lr_schedule.h) that must reproduce it, so the parameters live in one place:
the table below pairs that text with the PyTorch scheduler. A case holds base_lr, the
number of steps and lr_0 .. lr_{steps-1}: the lr of optimizer step k (after k calls of
scheduler.step(), each after an optimizer.step(), as PyTorch asks).

PyTorch updates most schedules recursively (get_lr, "chainable") while Strata evaluates
the closed form (_get_closed_form_lr), so the two agree to rounding, not bit for bit.
Absolute rates become factors: eta_min = min_factor * base_lr; OneCycleLR's base is max_lr.
Run from anywhere: /usr/bin/python3 make_lr_schedules.py"""
import os
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as S

BASE_LR = 0.1


def sgd(lr=BASE_LR):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def interp(knot_steps, knot_factors):
    return lambda step: float(np.interp(step, knot_steps, knot_factors))


def airbench_triangle(total):
    # airbench's schedule: np.interp over [0, int(0.2 * total), total] -> [0.2, 1, 0].
    steps = [0, int(0.2 * total), total]
    return "piecewise_linear_lr(steps=[%d,%d,%d],factors=[0.2,1.0,0.0])" % tuple(steps), steps


# (Strata text, steps, base lr, function of an optimizer giving the PyTorch scheduler)
CASES = [
    ("constant_lr(factor=0.25,total_iters=4)", 10, BASE_LR,
     lambda o: S.ConstantLR(o, factor=0.25, total_iters=4)),
    ("linear_lr(start_factor=0.1,end_factor=1.0,total_iters=5)", 12, BASE_LR,
     lambda o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5)),
    ("linear_lr(start_factor=1.0,end_factor=0.05,total_iters=7)", 11, 0.3,
     lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=7)),
    ("step_lr(step_size=3,gamma=0.5)", 20, BASE_LR, lambda o: S.StepLR(o, step_size=3, gamma=0.5)),
    ("multi_step_lr(milestones=[2,5,11],gamma=0.3)", 16, BASE_LR,
     lambda o: S.MultiStepLR(o, milestones=[2, 5, 11], gamma=0.3)),
    ("exponential_lr(gamma=0.9)", 15, BASE_LR, lambda o: S.ExponentialLR(o, gamma=0.9)),
    # Past t_max: PyTorch's recursion climbs back up, as the closed form does.
    ("cosine_annealing_lr(t_max=10,min_factor=0.01)", 35, BASE_LR,
     lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01 * BASE_LR)),
    ("cosine_annealing_lr(t_max=7,min_factor=0.0)", 8, 0.05, lambda o: S.CosineAnnealingLR(o, T_max=7)),
    # Steps 0 .. total_steps: total_steps is the last value PyTorch allows.
    ("one_cycle_lr(total_steps=20,pct_start=0.25,anneal=cos,div_factor=25.0,final_div_factor=10000.0,"
     "three_phase=false)", 21, 0.4,
     lambda o: S.OneCycleLR(o, max_lr=0.4, total_steps=20, pct_start=0.25, anneal_strategy="cos")),
    ("one_cycle_lr(total_steps=30,pct_start=0.3,anneal=linear,div_factor=10.0,final_div_factor=100.0,"
     "three_phase=true)", 31, 0.2,
     lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=30, pct_start=0.3, anneal_strategy="linear",
                            div_factor=10.0, final_div_factor=100.0, three_phase=True)),
    ("one_cycle_lr(total_steps=17,pct_start=0.45,anneal=cos,div_factor=4.0,final_div_factor=3.0,"
     "three_phase=true)", 18, 1.0,
     lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=17, pct_start=0.45, div_factor=4.0,
                            final_div_factor=3.0, three_phase=True)),
    (airbench_triangle(25)[0], 26, 0.4,
     lambda o: S.LambdaLR(o, interp(airbench_triangle(25)[1], [0.2, 1.0, 0.0]))),
    # Constant before the first knot and after the last.
    ("piecewise_linear_lr(steps=[3,7,12,20],factors=[0.5,1.0,0.25,0.125])", 25, BASE_LR,
     lambda o: S.LambdaLR(o, interp([3, 7, 12, 20], [0.5, 1.0, 0.25, 0.125]))),
    ("sequential_lr(schedules=[linear_lr(start_factor=0.1,end_factor=1.0,total_iters=5),"
     "cosine_annealing_lr(t_max=15,min_factor=0.0)],milestones=[5])", 22, BASE_LR,
     lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
                                  S.CosineAnnealingLR(o, T_max=15)], milestones=[5])),
    ("sequential_lr(schedules=[constant_lr(factor=0.5,total_iters=3),step_lr(step_size=2,gamma=0.5),"
     "exponential_lr(gamma=0.8)],milestones=[4,9])", 14, BASE_LR,
     lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.5, total_iters=3), S.StepLR(o, step_size=2, gamma=0.5),
                                  S.ExponentialLR(o, gamma=0.8)], milestones=[4, 9])),
    ("chained_lr(schedules=[linear_lr(start_factor=0.2,end_factor=1.0,total_iters=4),step_lr(step_size=5,gamma=0.5)])",
     14, BASE_LR,
     lambda o: S.ChainedScheduler([S.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=4),
                                   S.StepLR(o, step_size=5, gamma=0.5)])),
    ("chained_lr(schedules=[exponential_lr(gamma=0.95),multi_step_lr(milestones=[3,6],gamma=0.1)])", 10, BASE_LR,
     lambda o: S.ChainedScheduler([S.ExponentialLR(o, gamma=0.95), S.MultiStepLR(o, milestones=[3, 6], gamma=0.1)])),
]


def learning_rates(base_lr, make_scheduler, steps):
    optimizer = sgd(base_lr)
    scheduler = make_scheduler(optimizer)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps - 1):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def main():
    warnings.simplefilter("ignore")  # SequentialLR's step(0) warns that epoch arguments are deprecated
    lines = [
        "# lr schedule golden cases written by tests/reference/golden/make_lr_schedules.py",
        "# with torch %s; do not edit by hand. Case name = the Strata schedule text." % torch.__version__,
    ]
    for text, steps, base_lr, make_scheduler in CASES:
        assert " " not in text, text  # the golden reader takes the name up to the first space
        lines += ["case " + text, "float base_lr %.17g" % base_lr, "int steps %d" % steps]
        lines += ["float lr_%d %.17g" % (i, lr) for i, lr in enumerate(learning_rates(base_lr, make_scheduler, steps))]
        lines.append("end")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lr_schedules.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
