import numpy as np
import pytest

from hyperexp.data.cache import cached_arrays


def test_an_entry_is_written_whole_or_not_at_all(tmp_path):
    def fails():
        raise RuntimeError("computation failed")

    with pytest.raises(RuntimeError):
        cached_arrays(tmp_path, "key", fails)
    assert [p.name for p in tmp_path.iterdir()] == ["key.npz.lock"]  # no entry, no temporary file

    first = cached_arrays(tmp_path, "key", lambda: {"value": np.arange(4.0)})
    again = cached_arrays(tmp_path, "key", fails)  # read back, not recomputed
    np.testing.assert_array_equal(again["value"], first["value"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.npz", "key.npz.lock"]
