"""The model tests run tiny tensors (4–8 channels, 32 px) on CPU: every op is a few microseconds of work, and
with intra-op threads each op also pays an OpenMP barrier, which on a shared, loaded machine costs a scheduler
time slice. One thread is then many times faster (measured: a tiny MUNIT train step 12 s with 2 threads on a
loaded 2-core machine, 0.6 s with one). Scoped to these tests and restored afterwards."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
