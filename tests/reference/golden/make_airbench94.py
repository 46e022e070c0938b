#!/usr/bin/python3
"""Writes airbench94.txt: five training steps of airbench94's recipe (narrow widths, batch 4)
computed by PyTorch, in the format of tests/support/golden.h, for
tests/samples/cifar10_recipe_test.cpp, which runs the same steps through Strata's recipe
(samples/cifar10/recipe_airbench94.cpp) from the same initial weights.

The recipe as airbench94.py has it: whitening conv (frozen weight; bias trained in epochs
0-2), GELU, three ConvGroups (conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU,
BN weight 1 and frozen, eps 1e-12, momentum 0.4), maxpool 3, flatten, Linear(no bias), * 1/9;
label-smoothed (0.2) cross-entropy summed over the batch; Nesterov SGD (momentum 0.85) with
airbench's two groups (BN biases at 64 lr), lr = 11.5 / k, weight_decay = (0.0153 * batch / k)
/ lr, k = 1024 (1 + 1 / 0.15); LambdaLR 0.2 -> 1 over int(0.23 total) steps -> 0.07 at total;
lookahead every 5 steps over every float tensor of the state, d = 0.95^5 (step / total)^3.
4 images, batch 2, drop-last: 2 batches an epoch, total = ceil(2 * 9.9) = 20 steps; the
batches in order, unaugmented (images 0-1, then 2-3, ...). Five steps reach the first
lookahead; the whitening bias trains in all of them.

The network, the normalisation and the hyperparameters come from the PyTorch reference of the
recipe, samples/cifar10/reference/airbench94_reference.py (one definition of the model).

One case, "airbench94" (widths 4, 4, 8). Keys (NAME: a state_dict key without the batch-norm weights and
num_batches_tracked, which Strata's bias-only batch norm does not have):
  int images N C H W; int batch; int steps; int widths; int labels (N)
  int pixels (N, 3, 32, 32): the uint8 values
  tensor whitening (24, 3, 2, 2): from the normalised images, float64 (sign: each
    eigenvector's largest-magnitude component positive, as samples/cifar10/whitening.h)
  tensor initial/NAME: the state before step 1 (PyTorch's initialisation, Dirac starts, the
    whitening weight)
  tensor loss_stepS (): the summed loss of step S
  tensor stepS/NAME: the state after step S = 1 and 5 (after the lookahead)
Run from anywhere: /usr/bin/python3 make_airbench94.py"""
import math
import os
import sys

import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # no __pycache__ left in samples/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "samples", "cifar10",
                                "reference"))
import airbench94_reference  # noqa: E402  (after the path it is found on)

WIDTHS = (4, 4, 8)
IMAGES, BATCH, STEPS = 4, 2, 5
RECORDED_STEPS = (1, 5)  # the states recorded: after the first step, and after the lookahead
MEAN = torch.tensor(airbench94_reference.MEAN).view(1, 3, 1, 1)
STD = torch.tensor(airbench94_reference.STD).view(1, 3, 1, 1)
EPOCHS, MOMENTUM, LR, WD, BIAS_SCALER = (airbench94_reference.HYP[key] for key in
                                         ("epochs", "momentum", "lr", "weight_decay", "bias_scaler"))


def smooth_pixels(generator):
    """uint8 images with structure (smooth, correlated channels), so that the whitening's
    eigenvalues are apart and its eigenvectors well defined."""
    noise = torch.randn(IMAGES, 3, 36, 36, generator=generator, dtype=torch.float64)
    smooth = sum(noise[:, :, i:i + 32, j:j + 32] for i in range(5) for j in range(5)) / 5
    mixing = torch.eye(3, dtype=torch.float64) + 0.5 * torch.rand(3, 3, generator=generator, dtype=torch.float64)
    mixed = torch.einsum("dc,nchw->ndhw", mixing, smooth)
    return (128 + 40 * mixed).round().clamp(0, 255)


def whitening(images):
    x = images.double()
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    moments = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(moments)
    values, vectors = values.flip(0), vectors.T.flip(0)
    gaps = (values[:-1] - values[1:]) / values[:-1]
    assert bool((gaps > 0.02).all()), "whitening eigenvalues too close: %s" % values
    for k in range(12):
        if vectors[k, torch.argmax(vectors[k].abs())] < 0:
            vectors[k] = -vectors[k]
    scaled = vectors / torch.sqrt(values + 5e-4).view(-1, 1)
    return torch.cat((scaled, -scaled)).reshape(24, 3, 2, 2).float()


def recorded(state):
    return {k: v.detach().clone() for k, v in state.items() if not ("norm" in k and k.endswith(".weight"))
            and not k.endswith("num_batches_tracked")}


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().float().reshape(-1).tolist())
    return "tensor %s %s : %s" % (key, " ".join(str(d) for d in t.shape), values)


def main():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(95)
    pixels = smooth_pixels(generator)
    labels = torch.randint(0, 10, (IMAGES,), generator=generator)
    images = (pixels.float() / 255 - MEAN) / STD
    net = airbench94_reference.make_net(WIDTHS)
    with torch.no_grad():
        net[0].weight.copy_(whitening(images))
    initial = recorded(net.state_dict())

    k = 1024 * (1 + 1 / (1 - MOMENTUM))
    lr, decay = LR / k, WD * BATCH / k
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        [dict(params=[p for n, p in named if "norm" in n], lr=lr * BIAS_SCALER,
              weight_decay=decay / (lr * BIAS_SCALER)),
         dict(params=[p for n, p in named if "norm" not in n], lr=lr, weight_decay=decay / lr)],
        momentum=MOMENTUM, nesterov=True, foreach=False)
    total = math.ceil(IMAGES // BATCH * EPOCHS)
    warmup = int(total * 0.23)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.2 + 0.8 * s / warmup if s < warmup else 1 - 0.93 * (s - warmup) / (total - warmup))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum")
    averages = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    lines = ["# airbench94 golden case written by tests/reference/golden/make_airbench94.py",
             "# with torch %s (float32, CPU); do not edit by hand." % torch.__version__,
             "case airbench94", "int images %d 3 32 32" % IMAGES, "int batch %d" % BATCH, "int steps %d" % STEPS,
             "int widths %s" % " ".join(map(str, WIDTHS)), "int labels %s" % " ".join(map(str, labels.tolist())),
             "int pixels %s" % " ".join(str(int(v)) for v in pixels.reshape(-1).tolist()),
             tensor_line("whitening", net[0].weight)]
    lines += [tensor_line("initial/" + key, value) for key, value in initial.items()]
    for step in range(1, STEPS + 1):
        first = (step - 1) % (IMAGES // BATCH) * BATCH
        net[0].bias.requires_grad = (step - 1) // (IMAGES // BATCH) < 3
        loss = loss_fn(net(images[first:first + BATCH]), labels[first:first + BATCH])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 5 == 0:
            d = 0.95 ** 5 * (step / total) ** 3
            with torch.no_grad():
                state = net.state_dict()
                for key, average in averages.items():
                    average.lerp_(state[key], 1 - d)
                    state[key].copy_(average)
        lines.append(tensor_line("loss_step%d" % step, loss))
        if step in RECORDED_STEPS:
            state = recorded(net.state_dict())
            lines += [tensor_line("step%d/%s" % (step, key), value) for key, value in state.items()]
    lines.append("end")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "airbench94.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
