import numpy as np
import pytest

from ebsd_core.errors import InputError
from ebsd_core.fewshot import few_shot_split
from ebsd_core.io.dataset import Dataset, read_dataset


def test_split_is_seeded_disjoint_and_stratified(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    a = few_shot_split(ds, shots=3, seed=1, val_per_class=2)
    b = few_shot_split(ds, shots=3, seed=1, val_per_class=2)
    assert np.array_equal(a.train, b.train)
    assert len(a.train) == 3 * 6
    assert np.bincount(ds.labels[a.train]).tolist() == [3] * 6
    all_seen = np.concatenate([a.train, a.val, a.test])
    assert len(set(all_seen)) == len(all_seen)
    assert not set(all_seen) & set(a.holdout)
    assert set(ds.material[a.holdout]) == {"cu", "w"}


def test_too_few_patterns_or_classes():
    ds = Dataset(patterns=np.zeros((4, 8, 8)), labels=[0, 0, 1, 1], classes=[225, 229], material=["a"] * 4)
    with pytest.raises(InputError, match="5 shots need at least 6"):
        few_shot_split(ds, shots=5)
    one = Dataset(patterns=np.zeros((4, 8, 8)), labels=[0] * 4, classes=[225], material=["a"] * 4)
    with pytest.raises(InputError, match="at least two"):
        few_shot_split(one, shots=1)
