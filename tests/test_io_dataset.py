import h5py
import numpy as np
import pytest

from ebsd_core.errors import InputError
from ebsd_core.io.dataset import Dataset, read_dataset, write_dataset


def _toy(n=10):
    rng = np.random.default_rng(0)
    return Dataset(
        patterns=rng.integers(0, 255, (n, 16, 16)).astype(np.uint8),
        labels=np.arange(n) % 2,
        classes=[225, 229],
        material=np.array(["ni", "ferrite"] * (n // 2), dtype=object),
        provenance={"seed": 1},
    )


def test_roundtrip(tmp_path):
    ds = _toy()
    path = write_dataset(ds, tmp_path / "toy.h5")
    again = read_dataset(path)
    assert np.array_equal(again.patterns, ds.patterns)
    assert again.class_symbols == ["Fm-3m", "Im-3m"]
    assert list(again.material) == list(ds.material)
    assert again.provenance == {"seed": 1}
    assert np.isnan(again.quaternions).all()
    assert again.class_counts() == {"Fm-3m": 5, "Im-3m": 5}


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    ds = _toy()
    target = tmp_path / "out.h5"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(RuntimeError):
        write_dataset(ds, target)
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_subset_and_lazy(tmp_path):
    path = write_dataset(_toy(), tmp_path / "toy.h5")
    lazy = read_dataset(path, lazy=True)
    part = lazy.subset(np.array([7, 2, 5]))
    assert np.array_equal(part.patterns, read_dataset(path).patterns[[7, 2, 5]])
    assert list(part.labels) == [1, 0, 1]


@pytest.mark.parametrize(
    "content,match",
    [(b"", "no such file|not a readable"), (b"\x89HDF\r\n\x1a\n garbage", "not a readable HDF5")],
)
def test_corrupt_files_are_named(tmp_path, content, match):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.h5"):
        read_dataset(path)


def test_truncated_dataset(tmp_path):
    path = write_dataset(_toy(200), tmp_path / "big.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="big.h5: it is cut short: .* are here, of a copy or upload that did not"):
        read_dataset(path)
    from ebsd_core.io.readers import open_patterns

    with pytest.raises(InputError, match="big.h5: it is cut short"):  # not "kikuchipy cannot read" a dataset
        open_patterns(path)


def test_wrong_hdf5_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not an ebsd-fewshot-dataset"):
        read_dataset(path)


def test_a_folder_given_as_a_dataset_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a dataset file: make one from class folders"):
        read_dataset(tmp_path)


def test_a_pattern_file_given_as_a_dataset_is_named_for_what_it_is(tmp_path):
    """Found on review: a PNG or an EDAX scan given to train as --data was told it is "not an HDF5 file: another
    format under this name, or damaged"."""
    from PIL import Image

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "p1.png")
    (tmp_path / "scan.up2").write_bytes(b"\x03\x00\x00\x00" * 8)
    (tmp_path / "data").write_bytes(b"\x03\x00\x00\x00" * 8)
    for name, what in (("p1.png", "is a .png file, not"), ("scan.up2", "is a .up2 file, not"), ("data", "is not")):
        with pytest.raises(InputError, match=rf"/{name}: {what} a dataset \(the HDF5 file that 'simulate'"):
            read_dataset(tmp_path / name)
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(InputError, match="/empty.h5: the file is empty$"):
        read_dataset(tmp_path / "empty.h5")
    (tmp_path / "word.h5").write_bytes(b"a Word document, renamed" * 40)  # HDF5 by its name: the HDF5 checks speak
    with pytest.raises(InputError, match="/word.h5: it is not an HDF5 file: another format under this name"):
        read_dataset(tmp_path / "word.h5")
