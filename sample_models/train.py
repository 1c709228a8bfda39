"""Train onnxcert's sample models: small CNNs on scikit-learn's handwritten digits.

    python sample_models/train.py            # about a minute on one CPU core

As Cohen et al. (2019) do for CIFAR-10 and ImageNet, each model is trained on images with
Gaussian noise N(0, sigma^2 I) added in [0, 1] pixel space, once at sigma = 0.25 and once at
sigma = 0.5. The data is ``sklearn.datasets.load_digits`` (1797 images, 8x8, pixel values 0..16,
scaled here to [0, 1]); a stratified held-out split is never trained on. The script writes, next
to itself:

- ``digits_sigma0.25.onnx``, ``digits_sigma0.50.onnx``: the models, with onnxcert metadata
  (8x8 grayscale NCHW, mean 0.5, std 0.5, classes "0".."9", logits, training sigma), so that
  ``onnxcert run`` needs no config;
- ``digits_test/<label>/<index>.png``: the held-out digits as 8-bit grayscale PNG (``index`` is
  the image's position in ``load_digits``);
- ``metrics.json``: accuracies on the PNG-decoded held-out images, measured with onnxruntime on
  the written ONNX files, plus training time and onnxruntime throughput.

Everything is seeded; training runs with one torch thread, so the weights are reproducible.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the exporters package, when run from a checkout

from exporters import NormalizeLayer, export_model  # noqa: E402

SIGMAS = (0.25, 0.50)
MEAN, STD = 0.5, 0.5
CLASSES = [str(i) for i in range(10)]


def digits_net(width: int = 8) -> nn.Sequential:
    """Two 3x3 convolutions, one 2x2 max-pool, two linear layers: 18,346 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, 10))


def split(test_size: int, seed: int):
    """(x_train, y_train, x_test, y_test, test_indices); x in [0, 1], [N, 8, 8] float32."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    idx = np.arange(len(x))
    train, test = train_test_split(idx, test_size=test_size, stratify=digits.target, random_state=seed)
    test = np.sort(test)
    return x[train], digits.target[train], x[test], digits.target[test], test


def write_pngs(folder: Path, x: np.ndarray, y: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write 8-bit PNGs by label and return the images as read back (in [0, 1]) with their labels."""
    if folder.exists():
        shutil.rmtree(folder)
    back, labels = [], []
    for img, label, i in zip(x, y, indices):
        path = folder / str(int(label)) / f"{int(i):04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path, optimize=True)
    for path in sorted(folder.glob("*/*.png")):
        back.append(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)
        labels.append(int(path.parent.name))
    return np.stack(back), np.asarray(labels)


def train(x: np.ndarray, y: np.ndarray, sigma: float, *, epochs: int, seed: int) -> nn.Sequential:
    """Adam with a cosine schedule; every batch gets fresh noise N(0, sigma^2) before normalizing."""
    torch.manual_seed(seed)
    model = nn.Sequential(NormalizeLayer([MEAN], [STD]), digits_net())
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed + 1)
    xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y).long()
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(xt), generator=gen).split(64):
            xb = xt[batch] + sigma * torch.randn(xt[batch].shape, generator=gen)
            loss = nn.functional.cross_entropy(model(xb), yt[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def evaluate(path: Path, x: np.ndarray, y: np.ndarray, sigma: float, *, draws: int, seed: int) -> dict:
    """Accuracies of the ONNX model (onnxruntime) on x in [0, 1]: clean, under noise, smoothed.

    ``noisy``: the base classifier on x + N(0, sigma^2), averaged over ``draws`` draws per image.
    ``smoothed``: the majority vote over those draws (Cohen et al.'s g(x), without abstention).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)

    def predict(batch):
        return session.run(None, {"input": ((batch - MEAN) / STD).astype(np.float32)})[0].argmax(1)

    x = x[:, None]
    clean = float(np.mean(predict(x) == y))
    votes = np.zeros((len(x), 10), dtype=np.int64)
    for _ in range(draws):
        pred = predict(x + sigma * rng.standard_normal(x.shape, dtype=np.float32))
        votes[np.arange(len(x)), pred] += 1
    return {"clean": clean, "noisy": float(votes[np.arange(len(x)), y].sum() / (draws * len(x))),
            "smoothed": float(np.mean(votes.argmax(1) == y)), "noise_draws": draws}


def throughput(path: Path, batch: int = 1000, repeats: int = 20, threads: int = 2) -> float:
    """onnxruntime samples per second at ``batch`` with ``threads`` intra-op threads (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)
    session.run(None, {"input": x})
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {"input": x})
    return batch * repeats / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    p.add_argument("--test-size", type=int, default=250, help="held-out images, stratified (default: 250)")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=100, help="noise draws per test image for the noisy accuracy")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (default: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)

    x_train, y_train, x_test, y_test, test_idx = split(args.test_size, args.seed)
    x_png, y_png = write_pngs(args.out / "digits_test", x_test, y_test, test_idx)
    metrics = {"data": {"train": len(x_train), "test": len(x_png), "seed": args.seed,
                        "epochs": args.epochs, "torch": torch.__version__}, "models": {}}
    for sigma in SIGMAS:
        start = time.perf_counter()
        model = train(x_train, y_train, sigma, epochs=args.epochs, seed=args.seed)
        seconds = time.perf_counter() - start
        path = args.out / f"digits_sigma{sigma:.2f}.onnx"
        result = export_model(model[1], path, input_shape=(1, 8, 8), channels="L", mean=[MEAN], std=[STD],
                              resize="exact", crop="none", classes=CLASSES, output_kind="logits",
                              sigma=sigma, provenance={"source": "sample_models/train.py",
                                                       "seed": args.seed, "epochs": args.epochs})
        acc = evaluate(path, x_png, y_png, sigma, draws=args.draws, seed=args.seed)
        speed = throughput(path)
        metrics["models"][path.name] = {"sigma": sigma, "train_seconds": round(seconds, 1),
                                        "accuracy": acc, "ort_samples_per_s_batch1000_2threads": round(speed),
                                        "parity_max_abs_diff": result.parity.max_abs_diff,
                                        "bytes": path.stat().st_size}
        print(f"{path.name}: trained in {seconds:.1f}s; clean {acc['clean']:.3f}, under noise "
              f"{acc['noisy']:.3f}, smoothed {acc['smoothed']:.3f}; {speed:,.0f} samples/s", flush=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
