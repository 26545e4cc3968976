"""The solve's thread settings (``core.device.cpu_threads``): torch and numpy's BLAS on one thread
inside, as they were after."""

import numpy as np
import pytest
import torch

from lsmplify_blender.core import device


def test_cpu_threads_sets_torch_and_numpy_blas_to_one_and_restores_them():
    blas = device._numpy_openblas()
    if blas is None:
        pytest.skip("numpy is not linked to a bundled OpenBLAS here")
    get, put = blas
    before_torch, before_blas = torch.get_num_threads(), int(get())
    put(2)
    try:
        with device.cpu_threads(torch.device("cpu")):
            assert torch.get_num_threads() == 1
            assert int(get()) == 1
            a = np.ones((64, 64))
            assert (a @ a)[0, 0] == 64.0  # BLAS still works on one thread
        assert int(get()) == 2
        assert torch.get_num_threads() == before_torch
    finally:
        put(before_blas)
