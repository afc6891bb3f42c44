"""FID-LeNet: the feature network of the offline FID substitute, its training and its storage.

A LeNet per data set (SPEC §8): Conv(1→32, 3, pad 1) + ReLU + MaxPool 2 → Conv(32→64, 3, pad 1)
+ ReLU + MaxPool 2 → Linear(3136→256) + ReLU → Linear(256→10), trained on the labelled training
split (Adam 1e-3, batch 128, 5 epochs, seed 0, inputs in [0, 1]). It is kept only if its test
accuracy passes the gate (98.5 % MNIST, 89 % Fashion-MNIST). The features are the 256 values
after the first Linear layer's ReLU.

The weights are stored in the data cache (`fid-lenet/<name>.eqx`) beside a record
(`<name>.json`) of their SHA-256, the test accuracy and the training settings; loading checks
the hash, so every FID of a data set comes from the one frozen network the record names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from ..data import Dataset
from ..data._fetch import _write_atomic, cache_root, canonical_name
from ._batching import map_batches
from ._fid import frechet_distance

#: Test accuracy a network must reach to be used, per data set (SPEC §8).
ACCURACY_GATE = {"mnist": 0.985, "fashion_mnist": 0.89}
FEATURES = 256


class LeNet(eqx.Module):
    """The feature network; `features(x)` for one image `[1, 28, 28]`, `__call__` the logits."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, key: Array):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        f32 = jnp.float32  # whatever jax_enable_x64 says: the stored weights are float32
        self.conv1 = eqx.nn.Conv2d(1, 32, 3, padding=1, key=k1, dtype=f32)
        self.conv2 = eqx.nn.Conv2d(32, 64, 3, padding=1, key=k2, dtype=f32)
        self.fc1 = eqx.nn.Linear(64 * 7 * 7, FEATURES, key=k3, dtype=f32)
        self.fc2 = eqx.nn.Linear(FEATURES, 10, key=k4, dtype=f32)

    def features(self, x: Array) -> Array:
        pool = eqx.nn.MaxPool2d(2, 2)
        h = pool(jax.nn.relu(self.conv1(x)))
        h = pool(jax.nn.relu(self.conv2(h)))
        return jax.nn.relu(self.fc1(h.reshape(-1)))

    def __call__(self, x: Array) -> Array:
        return self.fc2(self.features(x))


@dataclasses.dataclass(frozen=True)
class TrainedLeNet:
    """A network that passed its gate, with what the record holds about it."""

    net: LeNet
    accuracy: float
    sha256: str
    settings: dict = dataclasses.field(default_factory=dict)  # how it was trained


class GateNotPassed(RuntimeError):
    """The trained network's test accuracy is below the data set's gate; nothing was stored."""


@eqx.filter_jit
def _logits(net: LeNet, x: Array) -> Array:
    return jax.vmap(net)(x)


@eqx.filter_jit
def _features(net: LeNet, x: Array) -> Array:
    return jax.vmap(net.features)(x)


def _accuracy(net: LeNet, x: np.ndarray, y: np.ndarray) -> float:
    logits = map_batches(lambda xb: _logits(net, jnp.asarray(xb, jnp.float32)), x, 1000)
    return float(np.mean(np.asarray(jnp.argmax(logits, axis=-1)) == y))


def train_lenet(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    gate: float,
    epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> TrainedLeNet:
    """Trains a LeNet on images `[n, 1, 28, 28]` in [0, 1] and labels `[n]` (0–9).

    Raises:
        GateNotPassed: the test accuracy is below `gate`.
    """
    net = LeNet(jax.random.key(seed))
    opt = optax.adam(learning_rate)
    state = opt.init(eqx.filter(net, eqx.is_array))

    @eqx.filter_jit
    def step(net, state, xb, yb):
        def loss(net):
            logits = jax.vmap(net)(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        value, grads = eqx.filter_value_and_grad(loss)(net)
        updates, state = opt.update(grads, state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, updates), state, value

    rng = np.random.default_rng(seed)
    per_epoch = len(x_train) // batch_size
    # Optax's Adam mixes Python floats with its int32 step count: standard promotion, whatever
    # the caller's setting.
    with jax.numpy_dtype_promotion("standard"):
        for epoch in range(epochs):
            order = rng.permutation(len(x_train))
            for i in range(per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                xb, yb = jnp.asarray(x_train[idx], jnp.float32), jnp.asarray(y_train[idx])
                net, state, value = step(net, state, xb, yb)
            say(f"epoch {epoch + 1}/{epochs}: last batch loss {float(value):.4f}")
    accuracy = _accuracy(net, x_test, y_test)
    if accuracy < gate:
        raise GateNotPassed(f"test accuracy {accuracy:.4f} is below the gate {gate}")
    settings = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
    }
    return TrainedLeNet(net, accuracy, _sha256(_weights_bytes(net)), settings)


def _weights_bytes(net: LeNet) -> bytes:
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, net)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lenet_paths(name: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The weights file and the record of data set `name`'s network."""
    base = (cache_root() if root is None else Path(root)) / "fid-lenet"
    key = canonical_name(name)
    return base / f"{key}.eqx", base / f"{key}.json"


def save_lenet(
    name: str, trained: TrainedLeNet, settings: dict, root: str | os.PathLike | None = None
) -> Path:
    """Stores the weights, then the record that names their hash, the accuracy, the training
    settings and the caller's `settings` (the record last: a weights file without its record is
    never loaded)."""
    weights, record = lenet_paths(name, root)
    weights.parent.mkdir(parents=True, exist_ok=True)
    for path, data in (
        (weights, _weights_bytes(trained.net)),
        (
            record,
            json.dumps(
                {
                    "sha256": trained.sha256,
                    "test_accuracy": trained.accuracy,
                    **trained.settings,
                    **settings,
                },
                indent=1,
            ).encode(),
        ),
    ):
        _write_atomic(path, data)
    return weights


def train_and_save_lenet(
    name: str, data: Dataset, say: Callable[[str], None] = print
) -> tuple[TrainedLeNet, Path]:
    """Trains data set `name`'s network on `data` (its labelled splits, SPEC §8 settings) and
    stores it with the record `load_lenet` checks; returns it and its weights file.

    Raises:
        GateNotPassed: the test accuracy is below the data set's gate (nothing is stored).
    """
    name = canonical_name(name)
    if data.p_train is None or data.p_test is None:
        raise ValueError(f"{name}: training the FID-LeNet needs the labels")
    trained = train_lenet(
        data.x_train, data.p_train, data.x_test, data.p_test, gate=ACCURACY_GATE[name], say=say
    )
    return trained, save_lenet(name, trained, {"dataset": name})


def load_lenet(name: str, root: str | os.PathLike | None = None) -> TrainedLeNet:
    """The stored network of data set `name`, its weights checked against the record's hash.

    Raises:
        FileNotFoundError: none is stored; the message gives the command that trains one.
        ValueError: the weights are not those the record names.
    """
    weights, record = lenet_paths(name, root)
    command = f"rrae-fast data lenet {canonical_name(name).replace('_', '-')}"
    if not (weights.is_file() and record.is_file()):
        raise FileNotFoundError(
            f"no FID-LeNet for {canonical_name(name)} in {weights.parent}; train it with "
            f"`{command}`"
        )
    info = json.loads(record.read_text())
    data = weights.read_bytes()
    if _sha256(data) != info["sha256"]:
        raise ValueError(
            f"{weights} is not the network its record {record} names (SHA-256 differs); "
            f"delete both and run `{command}`"
        )
    net = eqx.tree_deserialise_leaves(io.BytesIO(data), LeNet(jax.random.key(0)))
    return TrainedLeNet(net, float(info["test_accuracy"]), info["sha256"])


def lenet_features(net: LeNet, images: np.ndarray | Array, batch_size: int = 1000) -> np.ndarray:
    """The 256 features of each image `[n, 1, 28, 28]` (values in [0, 1]), float64 `[n, 256]`."""
    images = jnp.asarray(images, jnp.float32)
    return np.asarray(map_batches(lambda xb: _features(net, xb), images, batch_size), np.float64)


def fid(
    real_images: np.ndarray | Array,
    generated_images: np.ndarray | Array,
    *,
    dataset: str,
    root: str | os.PathLike | None = None,
) -> float:
    """FID-LeNet between two image sets `[n, 1, 28, 28]` in [0, 1] with the stored network of
    `dataset` (a substitute for the paper's FID: compare rankings, not values)."""
    net = load_lenet(dataset, root).net
    return frechet_distance(
        lenet_features(net, real_images), lenet_features(net, generated_images)
    )
