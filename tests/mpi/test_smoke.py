"""The MPI harness itself: every rank runs, and collectives agree."""

import numpy as np


def test_allreduce_sum(comm):
    x = np.full(5, comm.rank + 1.0)
    out = np.empty_like(x)
    comm.Allreduce(x, out)
    assert np.all(out == comm.size * (comm.size + 1) / 2)
