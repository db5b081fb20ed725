#!/usr/bin/env python
"""The LeNet-5 MNIST trainer of fastconv.lenet, written in PyTorch, for side-by-side timings.

Same model (C1 6@5x5, S2 2x2, C3 16@5x5, S4 2x2, C5 120@5x5, F6 84, output 10; ReLU or tanh; max
or average pooling), same batch size, optimiser (Adam lr 1e-3, or SGD lr 0.01 momentum 0.9),
thread count and batch gathering (fancy-indexing a shuffled index once per batch). Only the
training loop is timed; the test accuracy is reported separately.

    env -u OPENBLAS_CORETYPE python benchmarks/lenet_torch.py --data DATA/mnist --epochs 1 --threads 2

torch is needed only here (and by bench_lenet.py's torch column); fastconv never imports it.
fastconv is used only to read MNIST (fastconv.datasets.mnist).
"""

import argparse
import time

import numpy as np
import torch
from torch import nn


class TorchLeNet5(nn.Module):
    """LeNet-5 in PyTorch, laid out like fastconv.lenet.LeNet5: (N, 1, 32, 32) -> (N, 10)."""

    def __init__(self, activation="relu", pooling="max"):
        super().__init__()
        act = nn.ReLU if activation == "relu" else nn.Tanh
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        self.layers = nn.Sequential(
            nn.Conv2d(1, 6, 5),
            act(),
            pool(2),
            nn.Conv2d(6, 16, 5),
            act(),
            pool(2),
            nn.Conv2d(16, 120, 5),
            act(),
            nn.Flatten(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.layers(x)


class TorchTrainer:
    """A PyTorch model, optimiser and data, trained one (partial) epoch at a time (the lr
    times lr_decay after each).

    images (N, 1, 32, 32) float32 and labels (N,) int64 NumPy arrays (shared, not copied).
    """

    def __init__(
        self,
        images,
        labels,
        batch_size=64,
        optimizer="adam",
        lr=None,
        threads=None,
        seed=0,
        activation="relu",
        pooling="max",
        lr_decay=0.7,
    ):
        if threads is not None:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.model = TorchLeNet5(activation, pooling)
        lr = (2e-3 if optimizer == "adam" else 0.01) if lr is None else lr
        self.optimizer = (
            torch.optim.Adam(self.model.parameters(), lr=lr)
            if optimizer == "adam"
            else torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        )
        for group in self.optimizer.param_groups:
            group["initial_lr"] = lr
        self.loss_fn = nn.CrossEntropyLoss()
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels)
        self.batch_size = batch_size
        self.lr_decay = lr_decay
        self.epochs_done = 0
        self.rng = np.random.default_rng([1, seed])

    def train_epoch(self):
        """One pass over the data in a fresh shuffled order -> (seconds, mean loss, accuracy)."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_decay**self.epochs_done
        n = len(self.labels)
        order = torch.from_numpy(self.rng.permutation(n))
        loss_sum = 0.0
        correct = 0
        start = time.perf_counter()
        for b in range(0, n, self.batch_size):
            index = order[b : b + self.batch_size]
            x = self.images[index]
            y = self.labels[index]
            self.optimizer.zero_grad()
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
            loss.backward()
            self.optimizer.step()
            # Read back per batch, as fastconv's fit does for its progress bar and log.
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == y).sum())
        seconds = time.perf_counter() - start
        self.epochs_done += 1
        return seconds, loss_sum / n, correct / n

    @torch.inference_mode()
    def accuracy(self, images, labels, batch_size=500):
        """Accuracy on images (N, 1, 32, 32), labels (N,) NumPy arrays."""
        self.model.eval()
        correct = 0
        for b in range(0, len(labels), batch_size):
            logits = self.model(torch.from_numpy(images[b : b + batch_size]))
            correct += int((logits.argmax(1) == torch.from_numpy(labels[b : b + batch_size])).sum())
        return correct / len(labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST directory")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lr-decay", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activation", choices=("relu", "tanh"), default="relu")
    parser.add_argument("--pooling", choices=("max", "avg"), default="max")
    args = parser.parse_args(argv)
    from fastconv.datasets import mnist

    data = mnist(args.data, padding=2)
    trainer = TorchTrainer(
        data.train_images,
        data.train_labels,
        args.batch_size,
        args.optimizer,
        args.lr,
        args.threads,
        args.seed,
        args.activation,
        args.pooling,
        args.lr_decay,
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
        f"{args.batch_size}, {args.optimizer}"
    )
    for epoch in range(args.epochs):
        seconds, loss, acc = trainer.train_epoch()
        test = trainer.accuracy(data.test_images, data.test_labels)
        print(
            f"epoch {epoch + 1:>2}/{args.epochs}  train loss {loss:.4f}  train acc "
            f"{100 * acc:.2f}%  test acc {100 * test:.2f}%  {seconds:.2f} s  "
            f"{len(data.train_labels) / seconds:,.0f} img/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
