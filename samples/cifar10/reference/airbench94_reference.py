#!/usr/bin/env python3
"""airbench94 in PyTorch, the recipe Strata's `strata_cifar10 --net airbench94` runs
(samples/cifar10/recipe_airbench94.cpp), written from that recipe for comparing accuracy and
time on the same machine and the same data files. Reads CIFAR-10's binary batches
(cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin).

  python3 airbench94_reference.py --data DIR --seeds 5         # on a GPU: per-seed accuracy, time
  python3 airbench94_reference.py --data DIR --quick --device cpu   # a few steps: that it runs
  python3 airbench94_reference.py --data DIR --seeds 10 --precision bf16 --compile  # vs Strata's bf16

The recipe: a frozen 2x2 whitening conv (3->24, bias; its bias trains for the first 3
epochs), GELU, three conv groups (64, 256, 256: conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3
-> BN -> GELU; convs same-padded without bias, Dirac on their first C_in output channels; BN
weight fixed at 1, eps 1e-12, momentum 0.4), maxpool 3, Linear(256->10, no bias), times 1/9.
Label-smoothed (0.2) cross-entropy summed over the batch; Nesterov SGD, momentum 0.85,
k = 1024 (1 + 1 / 0.15), lr = 11.5 / k, decay per step 0.0153 * batch / k (PyTorch's
weight_decay = decay / lr), BN biases at 64 lr; batch 1024, drop-last, ceil(9.9 epochs) of
steps, factor 0.2 -> 1 over the first 23%, then -> 0.07; lookahead every 5 steps with
d = 0.95^5 (step / total)^3 over every float tensor of the state, and the average at the end;
augmentation: random translation by up to 2 pixels (reflect padding) and the alternating
flip; evaluation with six views (image, mirror, and both at the two 1-pixel diagonal moves).

By default on a GPU the model runs as airbench does, in half precision with batch norm in
float and channels-last memory; --precision bf16 the same in bfloat16 (what Strata's
--precision bf16 compares with), --precision fp32 (or --fp32) everything in float32, as
Strata's default. --compile runs the model through torch.compile (PyTorch 2 or later; the
issue's stretch target): one model is compiled once and re-initialised for every run, so
the warm-up run pays for the compilation. The first run (seed 0 unless --no-warmup) is a
warm-up on random labels and is not reported.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

HYP = dict(
    batch_size=1024, epochs=9.9, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0,
    label_smoothing=0.2, whiten_bias_epochs=3, warmup_fraction=0.23, final_factor=0.07,
    lookahead_every=5, lookahead_base=0.95, translate=2, widths=(64, 256, 256), bn_momentum=0.4,
    bn_eps=1e-12, scale=1 / 9, whiten_images=5000, whiten_eps=5e-4,
)


# ---- data ------------------------------------------------------------------------------

def batches_dir(path):
    for candidate in (path, os.path.join(path, "cifar-10-batches-bin")):
        if os.path.isfile(os.path.join(candidate, "test_batch.bin")):
            return candidate
    sys.exit("no cifar-10-batches-bin under %s (samples/cifar10/download_cifar10.sh, or "
             "python3 ../shared/data/make_cifar10_bin.py OUT)" % path)


def read_batches(directory, names):
    records = np.concatenate([np.fromfile(os.path.join(directory, n), dtype=np.uint8) for n in names])
    if records.size % 3073:
        sys.exit("%s: not a whole number of 3073-byte records" % directory)
    records = records.reshape(-1, 3073)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, labels


class Loader:
    """Normalised images on the device; per epoch a reshuffle, a random translation by up
    to `translate` pixels of the reflect-padded image, and airbench's alternating flip (each
    image flipped at random in epoch 0, the opposite way in odd epochs, as in epoch 0 in even ones)."""

    def __init__(self, images, labels, batch_size, device, dtype, train, translate=0, generator=None):
        mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        self.images = ((images.to(device).float() / 255 - mean) / std).to(dtype)
        self.labels = labels.to(device)
        self.batch_size, self.train, self.translate = batch_size, train, translate
        self.generator = generator
        self.epoch = 0
        if train:
            self.first_flip = torch.rand(len(self.images), generator=generator).to(device) < 0.5

    def __len__(self):
        return len(self.images) // self.batch_size if self.train else math.ceil(len(self.images) / self.batch_size)

    def _augmented(self, index):
        images = self.images[index]
        flip = self.first_flip[index] ^ bool(self.epoch % 2)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        if self.translate:
            t = self.translate
            padded = F.pad(images, (t, t, t, t), mode="reflect")
            shifts = torch.randint(0, 2 * t + 1, (len(images), 2), generator=self.generator).to(images.device)
            rows = torch.arange(32, device=images.device)
            y = (shifts[:, 0:1] + rows).view(-1, 1, 32, 1).expand(-1, 3, 32, 32 + 2 * t)
            images = padded.gather(2, y)
            x = (shifts[:, 1:2] + rows).view(-1, 1, 1, 32).expand(-1, 3, 32, 32)
            images = images.gather(3, x)
        return images

    def __iter__(self):
        if not self.train:
            for first in range(0, len(self.images), self.batch_size):
                yield self.images[first:first + self.batch_size], self.labels[first:first + self.batch_size]
            return
        order = torch.randperm(len(self.images), generator=self.generator).to(self.images.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self._augmented(index), self.labels[index]
        self.epoch += 1


# ---- network ---------------------------------------------------------------------------

class BatchNorm(nn.BatchNorm2d):
    def __init__(self, channels):
        super().__init__(channels, eps=HYP["bn_eps"], momentum=HYP["bn_momentum"])
        self.weight.requires_grad = False  # fixed at 1


class Conv(nn.Conv2d):
    """3x3, same padding, no bias; output channels [0, C_in) start as the identity."""

    def __init__(self, channels_in, channels_out):
        super().__init__(channels_in, channels_out, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[:min(channels_in, channels_out)])


class ConvGroup(nn.Module):
    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(channels_out)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = BatchNorm(channels_out)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def make_net(widths):
    net = nn.Sequential(
        nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True), nn.GELU(),
        ConvGroup(24, widths[0]), ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2]),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(widths[2], 10, bias=False), Scale(HYP["scale"]))
    net[0].weight.requires_grad = False
    return net


def whitening_weight(images, eps):
    """The 12 eigenvectors of the 2x2 patches' second-moment matrix (no mean subtracted),
    largest eigenvalue first, each over sqrt(eigenvalue + eps), and their negations."""
    x = images.double()
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    moments = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(moments)
    values, vectors = values.flip(0), vectors.T.flip(0)
    scaled = vectors / torch.sqrt(values + eps).view(-1, 1)
    return torch.cat((scaled, -scaled)).reshape(24, 3, 2, 2)


# ---- training and evaluation -----------------------------------------------------------

def six_view_logits(net, images):
    def mirror_average(x):
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    moved = [padded[:, :, 0:32, 0:32], padded[:, :, 2:34, 2:34]]
    return 0.5 * mirror_average(images) + 0.25 * (mirror_average(moved[0]) + mirror_average(moved[1]))


def evaluate(net, loader, tta):
    net.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in loader:
            logits = six_view_logits(net, images) if tta else net(images)
            correct += (logits.argmax(1) == labels).sum().item()
    net.train()
    return correct / len(loader.images)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REDUCED_DTYPES = {"fp16": torch.half, "bf16": torch.bfloat16}


def model_dtype(args):
    return REDUCED_DTYPES.get(args.precision, torch.float)


def prepare_net(net, args):
    """The model in its run precision: reduced-precision weights and channels-last memory
    with batch norm in float (airbench's), or float32 throughout."""
    if args.precision in REDUCED_DTYPES:
        net = net.to(memory_format=torch.channels_last)
        for module in net.modules():
            module.float() if isinstance(module, BatchNorm) else module.to(model_dtype(args))
    return net


def fresh_net(args, device, compiled):
    """This run's freshly initialised model (from the global RNG, seeded by the caller): a new
    one, or, with --compile, the compiled model given its new weights and buffers (so that it
    is not compiled again)."""
    net = prepare_net(make_net(HYP["widths"]).to(device), args)
    if compiled is None:
        return net
    with torch.no_grad():
        compiled._orig_mod.load_state_dict(net.state_dict())
    return compiled


def train(seed, data, args, device, compiled=None, random_labels=False):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dtype = model_dtype(args)
    batch_size = args.batch_size
    train_images, train_labels = data["train"]
    if random_labels:
        train_labels = torch.randint(0, 10, train_labels.shape, generator=generator)
    train_loader = Loader(train_images, train_labels, batch_size, device, dtype, True, HYP["translate"], generator)
    test_loader = Loader(*data["test"], 2000, device, dtype, False)

    net = fresh_net(args, device, compiled)
    layers = getattr(net, "_orig_mod", net)  # the Sequential itself, compiled or not

    kilostep_scale = 1024 * (1 + 1 / (1 - HYP["momentum"]))
    lr = HYP["lr"] / kilostep_scale * args.lr_scale
    decay = HYP["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * HYP["bias_scaler"]
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    norm_biases = [p for name, p in named if "norm" in name]
    others = [p for name, p in named if "norm" not in name]
    optimizer = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=decay / lr_biases),
                                 dict(params=others, lr=lr, weight_decay=decay / lr)],
                                momentum=HYP["momentum"], nesterov=True)
    total_steps = args.steps or math.ceil(len(train_loader) * args.epochs)
    warmup = int(total_steps * HYP["warmup_fraction"])

    def factor(step):
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return 1.0 + (HYP["final_factor"] - 1.0) * (step - warmup) / max(1, total_steps - warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="sum")

    synchronize(device)
    start = time.perf_counter()
    count = min(HYP["whiten_images"], len(train_loader.images))
    with torch.no_grad():
        layers[0].weight.copy_(whitening_weight(train_loader.images[:count].float(), HYP["whiten_eps"]))
    # The lookahead averages: every float tensor of the state, from after the whitening.
    averages = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    def lookahead(d):
        with torch.no_grad():
            state = net.state_dict()
            for key, average in averages.items():
                average.lerp_(state[key], 1 - d)
                state[key].copy_(average)

    step = 0
    for epoch in range(math.ceil(total_steps / len(train_loader))):
        layers[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        for images, labels in train_loader:
            loss = loss_fn(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % HYP["lookahead_every"] == 0:
                lookahead(HYP["lookahead_base"] ** HYP["lookahead_every"] * (step / total_steps) ** 3)
            if step >= total_steps:
                break
        if step >= total_steps:
            break
    lookahead(1.0)  # the weights become the averages
    synchronize(device)
    seconds = time.perf_counter() - start
    return evaluate(net, test_loader, tta=False), evaluate(net, test_loader, tta=True), seconds, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("STRATA_CIFAR10_DIR", "."),
                        help="cifar-10-batches-bin or the folder holding it (default: $STRATA_CIFAR10_DIR)")
    parser.add_argument("--seeds", type=int, default=1, help="runs, seeds 1..N (default 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                        help="the model's storage: fp16 (default on a GPU, airbench's), bf16, or fp32 (default on a CPU)")
    parser.add_argument("--fp32", action="store_true", help="the same as --precision fp32, as Strata's default")
    parser.add_argument("--compile", action="store_true", help="train through torch.compile (PyTorch 2 or later)")
    parser.add_argument("--batch-size", type=int, default=HYP["batch_size"])
    parser.add_argument("--epochs", type=float, default=HYP["epochs"])
    parser.add_argument("--lr-scale", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2,048 training and 1,000 test images, batch 256, 6 steps, no warm-up")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unreported warm-up run")
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    directory = batches_dir(args.data)
    data = {"train": read_batches(directory, ["data_batch_%d.bin" % i for i in range(1, 6)]),
            "test": read_batches(directory, ["test_batch.bin"])}
    if args.quick:
        data = {"train": tuple(t[:2048] for t in data["train"]), "test": tuple(t[:1000] for t in data["test"])}
        args.batch_size, args.steps, args.no_warmup = 256, 6, True
    device = torch.device(args.device)
    if args.fp32 and args.precision not in (None, "fp32"):
        sys.exit("--fp32 contradicts --precision %s" % args.precision)
    if args.precision is None:
        args.precision = "fp16" if device.type == "cuda" and not args.fp32 else "fp32"
    compiled = None
    if args.compile:
        if not hasattr(torch, "compile"):
            sys.exit("--compile needs PyTorch 2 or later (torch.compile); this is torch %s" % torch.__version__)
        compiled = torch.compile(prepare_net(make_net(HYP["widths"]).to(device), args))
    print("airbench94 reference: torch %s on %s (%s%s), %d training and %d test images, batch %d" % (
        torch.__version__, device,
        "float32" if args.precision == "fp32" else args.precision + " + float batch norm, channels-last",
        ", torch.compile" if args.compile else "", len(data["train"][1]), len(data["test"][1]), args.batch_size))
    if not args.no_warmup:
        train(0, data, args, device, compiled, random_labels=True)
    results = []
    for seed in range(1, args.seeds + 1):
        accuracy, accuracy_tta, seconds, steps = train(seed, data, args, device, compiled)
        results.append((accuracy, accuracy_tta, seconds))
        print("seed %d: %d steps, %.3f s, test accuracy %.4f, with six views %.4f" % (
            seed, steps, seconds, accuracy, accuracy_tta), flush=True)
    if len(results) > 1:
        columns = np.array(results)
        print("mean of %d: %.3f s, accuracy %.4f (std %.4f), with six views %.4f (std %.4f)" % (
            len(results), columns[:, 2].mean(), columns[:, 0].mean(), columns[:, 0].std(),
            columns[:, 1].mean(), columns[:, 1].std()))


if __name__ == "__main__":
    main()
