"""Several device tensors to the host in one device-to-host copy.

Each transfer from an accelerator waits for the device's queue and pays a fixed latency, so a
batch's results (label maps and a small segment table) travel as one byte buffer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_host(tensors: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """The tensors as numpy arrays, moved with one `.cpu()` (one synchronisation).

    Args:
        tensors: name -> tensor, all on one device; any shapes, integer, bool or float dtypes.

    Returns:
        name -> array of the same shape and dtype, views of one host buffer.
    """
    if on_host(tensors):
        # Already on the host: views, no copy (a 1080p batch's maps are megabytes).
        return {name: tensor.contiguous().numpy() for name, tensor in tensors.items()}
    # Widest items first: every part then starts at a multiple of its own item size, so
    # the host side can view the bytes as that dtype without a copy.
    names = sorted(tensors, key=lambda name: -tensors[name].element_size())
    parts = [tensors[name].contiguous().flatten().view(torch.uint8) for name in names]
    host = torch.cat(parts).cpu() if parts else torch.zeros(0, dtype=torch.uint8)
    arrays, offset = {}, 0
    for name, part in zip(names, parts, strict=True):
        tensor = tensors[name]
        view = host[offset : offset + part.numel()].view(tensor.dtype).view(tensor.shape)
        arrays[name] = view.numpy()
        offset += part.numel()
    return arrays


def on_host(tensors: dict[str, Tensor]) -> bool:
    """Whether every tensor is a CPU tensor already."""
    return all(tensor.device.type == "cpu" for tensor in tensors.values())
