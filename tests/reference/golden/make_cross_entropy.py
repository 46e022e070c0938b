#!/usr/bin/python3
"""Writes cross_entropy.txt: small F.cross_entropy cases (label smoothing, the reductions
none/mean/sum, ignore_index rows, odd class counts, extreme logits, every row ignored)
with PyTorch's loss and dL/dlogits for a given dL/dloss, in the format of
tests/support/golden.h. Run from anywhere: /usr/bin/python3 make_cross_entropy.py"""
import os

import torch
import torch.nn.functional as F

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}

# (name, N, classes, label_smoothing, reduction, ignore_index, ignored rows, logit scale)
CASES = [
    ("c10_mean", 6, 10, 0.0, "mean", -100, [], 3.0),
    ("c10_smooth01_mean_ignored", 8, 10, 0.1, "mean", -100, [2, 5], 3.0),
    ("c10_smooth02_mean", 5, 10, 0.2, "mean", -100, [], 3.0),
    ("c7_smooth02_sum_ignored", 5, 7, 0.2, "sum", -100, [0], 3.0),
    ("c7_none_smooth01_ignore3", 9, 7, 0.1, "none", 3, None, 3.0),
    ("c7_none_ignored", 4, 7, 0.0, "none", -100, [1, 3], 3.0),
    ("c1_mean", 3, 1, 0.0, "mean", -100, [], 3.0),
    ("c1_smooth01_sum", 2, 1, 0.1, "sum", -100, [], 3.0),
    ("c37_smooth01_mean_batch1", 1, 37, 0.1, "mean", -100, [], 3.0),
    ("c45_none", 3, 45, 0.0, "none", -100, [], 3.0),
    ("extreme_logits_smooth01_mean", 4, 10, 0.1, "mean", -100, [3], 1e4),
    ("extreme_logits_sum", 3, 7, 0.0, "sum", -100, [], 1e4),
    ("all_ignored_smooth01_mean", 3, 5, 0.1, "mean", -100, [0, 1, 2], 3.0),
]


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def main():
    torch.manual_seed(20240611)
    lines = [
        "# cross_entropy golden cases written by tests/reference/golden/make_cross_entropy.py",
        "# with torch %s (float32, CPU); do not edit by hand." % torch.__version__,
        "# reduction: 0 none, 1 mean, 2 sum. dL_dloss is () for mean and sum, (N) for none.",
    ]
    for name, n, classes, smoothing, reduction, ignore_index, ignored, scale in CASES:
        logits = ((torch.rand(n, classes) * 2 - 1) * scale).requires_grad_(True)
        targets = torch.randint(0, classes, (n,))
        if ignored is None:  # ignore_index is a real class: rows with that target are ignored
            targets[0] = ignore_index
        else:
            targets[ignored] = ignore_index
        loss = F.cross_entropy(logits, targets, reduction=reduction, ignore_index=ignore_index,
                               label_smoothing=smoothing)
        dL_dloss = torch.rand(loss.shape) * 2 - 1
        loss.backward(dL_dloss)
        lines.append("case " + name)
        lines.append("int classes %d" % classes)
        lines.append("int reduction %d" % REDUCTIONS[reduction])
        lines.append("int ignore_index %d" % ignore_index)
        lines.append("float label_smoothing %.9g" % smoothing)
        lines.append("int targets " + " ".join(str(t) for t in targets.tolist()))
        lines.append(tensor_line("logits", logits))
        lines.append(tensor_line("dL_dloss", dL_dloss))
        lines.append(tensor_line("loss", loss))
        lines.append(tensor_line("dL_dlogits", logits.grad))
        lines.append("end")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cross_entropy.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
