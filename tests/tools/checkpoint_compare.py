"""Reading and comparing the model tensors of moegrad checkpoints (the distributed tests)."""
import h5py
import numpy as np


def model_params(path):
    """Every dataset under /model of the checkpoint at path, by key, as numpy arrays."""
    out = {}
    with h5py.File(path, "r") as f:
        f["model"].visititems(lambda k, v: out.__setitem__(k, np.array(v)) if isinstance(v, h5py.Dataset) else None)
    return out


def max_relative_difference(a, b):
    """max over keys of max|a - b| / max|b| (b the reference; keys must match)."""
    return max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-30)) for k in b)
