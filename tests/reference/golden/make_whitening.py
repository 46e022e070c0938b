#!/usr/bin/python3
"""Writes whitening.txt: airbench94's whitening weight computed by PyTorch from small seeded
synthetic image sets, in the format of tests/support/golden.h, for
tests/samples/cifar10_recipe_test.cpp (samples/cifar10/whitening.h).

The computation is airbench94's (get_patches, get_whitening_parameters, init_whitening_conv),
written out here in float64: every 2x2 window (stride 1) of the images, flattened (c, i, j);
their second-moment matrix M = P^T P / windows (no mean subtracted, as airbench); its
eigenvalues and eigenvectors by torch.linalg.eigh, largest eigenvalue first; filter k =
eigenvector k / sqrt(eigenvalue k + eps), filters 12..23 their negations.

Sign: eigh's eigenvectors have no fixed sign. Strata (and this script) makes each one's
component of largest magnitude positive (the first such on a tie); airbench keeps eigh's.

Cases "whitening/<i>": int images N C H W, int patch, float eps; tensor images (N, C, H, W);
tensor moments (D, D); tensor eigenvalues (D), descending; tensor weight (2D, C, p, p).
Values are float64 results rounded to float32 (the test's tolerance allows for that).
The script fails unless neighbouring eigenvalues differ by more than 1% (otherwise the
eigenvectors would be ill-defined and a sign or mixture could legitimately differ).
Run from anywhere: /usr/bin/python3 make_whitening.py"""
import os

import torch

CASES = [  # (images, channels, height, width, patch, eps)
    (3, 3, 8, 9, 2, 5e-4),
    (5, 3, 7, 6, 2, 1e-2),
    (2, 2, 5, 5, 3, 5e-4),
]
MIN_GAP = 0.01  # relative gap between neighbouring eigenvalues


def synthetic_images(generator, n, c, h, w):
    """Correlated across channels and neighbouring pixels, with a mean, like natural images."""
    noise = torch.randn(n, c, h + 2, w + 2, generator=generator, dtype=torch.float64)
    smooth = (noise[:, :, :-2, :-2] + noise[:, :, 1:-1, 1:-1] * 2 + noise[:, :, 2:, 2:]) / 4
    mixing = torch.eye(c, dtype=torch.float64) + 0.4 * torch.rand(c, c, generator=generator, dtype=torch.float64)
    mixed = torch.einsum("dc,nchw->ndhw", mixing, smooth) + 0.3 * torch.randn(
        n, c, h, w, generator=generator, dtype=torch.float64)
    return (mixed + 0.2).float()  # the images the C++ test gets are float32


def whitening(images, patch, eps):
    x = images.double()
    n, c = x.shape[:2]
    patches = x.unfold(2, patch, 1).unfold(3, patch, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * patch * patch)
    moments = patches.T @ patches / patches.shape[0]
    values, vectors = torch.linalg.eigh(moments, UPLO="U")
    values, vectors = values.flip(0), vectors.T.flip(0)  # rows: eigenvectors, largest value first
    for k in range(vectors.shape[0]):
        largest = torch.argmax(vectors[k].abs())  # the first on a tie
        if vectors[k, largest] < 0:
            vectors[k] = -vectors[k]
    gaps = (values[:-1] - values[1:]) / values[:-1].abs()
    assert bool((gaps > MIN_GAP).all()), "eigenvalues too close for a well-defined fixture: %s" % values
    scaled = vectors / torch.sqrt(values + eps).view(-1, 1)
    weight = torch.cat((scaled, -scaled)).reshape(-1, c, patch, patch)
    return moments, values, weight


def tensor_line(key, t):
    values = " ".join("%.9g" % v for v in t.detach().float().reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return "tensor %s %s : %s" % (key, dims, values)


def main():
    generator = torch.Generator().manual_seed(20240607)
    lines = ["# whitening golden cases written by tests/reference/golden/make_whitening.py",
             "# with torch %s (float64, eigh); do not edit by hand." % torch.__version__]
    for i, (n, c, h, w, patch, eps) in enumerate(CASES):
        images = synthetic_images(generator, n, c, h, w)
        moments, values, weight = whitening(images, patch, eps)
        lines += ["case whitening/%d" % i, "int images %d %d %d %d" % (n, c, h, w), "int patch %d" % patch,
                  "float eps %.17g" % eps, tensor_line("images", images), tensor_line("moments", moments),
                  tensor_line("eigenvalues", values), tensor_line("weight", weight), "end"]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "whitening.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
