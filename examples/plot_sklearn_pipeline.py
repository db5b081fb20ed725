"""
Convolution features in a scikit-learn pipeline
===============================================

fastconv works on plain NumPy arrays, so a convolution is one more step of a scikit-learn
``Pipeline``. Here a small transformer computes fixed, hand-made features (a bank of oriented
edge and blob filters, ReLU and max pooling) with :func:`fastconv.conv2d` and
:func:`fastconv.max_pool2d`, and a linear (ridge) classifier labels scikit-learn's 8 x 8 digits
from them; cross-validation compares it with the raw pixels, and a grid search picks the pooling
size.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastconv


def filter_bank(size=5, orientations=6):
    """(F, 1, size, size) float32: oriented first and second derivatives of a Gaussian, and a
    centre-surround blob; each filter has zero mean and unit norm."""
    r = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    gauss = np.exp(-(xx**2 + yy**2) / (2 * (size / 4) ** 2))
    filters = []
    for theta in np.pi * np.arange(orientations) / orientations:
        u = xx * np.cos(theta) + yy * np.sin(theta)
        filters.append(u * gauss)  # edge across direction theta
        filters.append((u**2 - (size / 4) ** 2) * gauss)  # bar along theta
    filters.append((xx**2 + yy**2 - 2 * (size / 4) ** 2) * gauss)  # blob
    bank = np.stack(filters)
    bank -= bank.mean(axis=(1, 2), keepdims=True)
    bank /= np.linalg.norm(bank, axis=(1, 2), keepdims=True)
    return bank[:, None].astype(np.float32)


class ConvFeatures(TransformerMixin, BaseEstimator):
    """Images (n_samples, H * W) -> features: conv2d with a fixed filter bank, ReLU of both
    signs, max pooling, flattened."""

    def __init__(self, shape=(8, 8), pool=2, size=5):
        self.shape = shape
        self.pool = pool
        self.size = size

    def fit(self, X, y=None):
        self.weight_ = filter_bank(self.size)
        return self

    def transform(self, X):
        x = np.asarray(X, np.float32).reshape(-1, 1, *self.shape) / 16.0
        y = fastconv.conv2d(x, self.weight_, padding="same")  # (N, F, H, W)
        y = np.concatenate([fastconv.relu(y), fastconv.relu(-y)], axis=1)
        y = fastconv.max_pool2d(y, self.pool, ceil_mode=True)
        return y.reshape(len(x), -1)


digits = load_digits()
X, y = digits.data, digits.target  # 1797 images of 8 x 8, values 0..16
print(
    X.shape,
    "features per image after the convolution:",
    ConvFeatures().fit(X).transform(X[:1]).shape[1],
)

# %%
# Pixels against convolution features
# -----------------------------------
# Five-fold cross-validated accuracy of the same classifier on the raw pixels and on the
# features (each standardised first).

pixels = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0))
features = make_pipeline(ConvFeatures(), StandardScaler(), RidgeClassifier(alpha=10.0))
scores = {
    "raw pixels": cross_val_score(pixels, X, y, cv=5),
    "conv features": cross_val_score(features, X, y, cv=5),
}
for name, s in scores.items():
    print(f"{name:>13}: {s.mean():.3f} +- {s.std():.3f}")

# %%
# Choosing the pooling with a grid search
# ---------------------------------------
# The transformer's arguments are ordinary estimator parameters, so ``GridSearchCV`` tunes them
# together with the classifier's.

search = GridSearchCV(
    features, {"convfeatures__pool": [2, 3, 4], "ridgeclassifier__alpha": [1.0, 10.0, 100.0]}, cv=3
)
search.fit(X, y)
print("best:", search.best_params_, f"accuracy {search.best_score_:.3f}")
table = search.cv_results_

# %%
# The filters and what they see
# -----------------------------
# The accuracies above, the 13 filters of the bank, and the (positive part of the) responses
# of a few of them to one digit.

fig = plt.figure(figsize=(13, 6.5), layout="constrained")
grid = fig.add_gridspec(2, 4)
ax = fig.add_subplot(grid[0, 0])
ax.boxplot(list(scores.values()))
ax.set_xticks([1, 2], list(scores))
ax.set_title("5-fold accuracy")
ax.grid(alpha=0.3)
ax = fig.add_subplot(grid[1, 0])
pools, Cs = [2, 3, 4], [1.0, 10.0, 100.0]
acc = np.array(table["mean_test_score"]).reshape(len(pools), len(Cs))
ax.imshow(acc, cmap="viridis")
for (i, j), v in np.ndenumerate(acc):
    ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="w", fontsize=8)
ax.set_xticks(range(len(Cs)), Cs)
ax.set_yticks(range(len(pools)), pools)
ax.set_xlabel("ridge penalty alpha")
ax.set_ylabel("max-pool size")
ax.set_title("grid search (3-fold)")

bank = filter_bank()
sub = grid[0, 1:].subgridspec(2, 7)
for f in range(bank.shape[0]):
    ax = fig.add_subplot(sub[f // 7, f % 7])
    ax.imshow(bank[f, 0], cmap="RdBu_r")
    ax.set_axis_off()
    ax.set_title(f"filter {f}", fontsize=7)
responses = fastconv.relu(
    fastconv.conv2d(X[:1].reshape(1, 1, 8, 8).astype(np.float32) / 16, bank, padding="same")
)
sub = grid[1, 1:].subgridspec(1, 7)
ax = fig.add_subplot(sub[0])
ax.imshow(X[0].reshape(8, 8), cmap="gray_r")
ax.set_title(f"digit {y[0]}", fontsize=8)
ax.set_axis_off()
for k, f in enumerate([0, 2, 4, 6, 10, 12]):
    ax = fig.add_subplot(sub[k + 1])
    ax.imshow(responses[0, f], cmap="magma")
    ax.set_title(f"ReLU(filter {f})", fontsize=8)
    ax.set_axis_off()
plt.show()
