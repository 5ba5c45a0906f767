"""NORDIF acquisitions: Pattern.dat is read with its Setting.txt, never as the folder's background images."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import KIKUCHIPY_DATA
from PIL import Image

from ebsd_core.errors import InputError
from ebsd_core.io import nordif
from ebsd_core.io.readers import open_patterns

# a real NORDIF acquisition of Ni (3x3 patterns of 60x60 px), shipped with kikuchipy
SHIPPED = KIKUCHIPY_DATA / "nordif"
ACQUISITION = [
    "Pattern.dat",
    "Setting.txt",
    "Background acquisition pattern.bmp",
    "Background calibration pattern.bmp",
    "Calibration (294,532).bmp",
    "Calibration (425,447).bmp",
]


@pytest.fixture
def acquisition(tmp_path) -> Path:
    folder = tmp_path / "ni_scan"
    folder.mkdir()
    for name in ACQUISITION:
        shutil.copy(SHIPPED / name, folder / name)
    return folder


def test_an_acquisition_folder_is_read_as_its_scan(acquisition):
    """Found on review: the folder was read as a folder of images, its 4 background and calibration images."""
    source = open_patterns(acquisition)
    assert source.kind == "kikuchipy" and Path(source.path).name == "Pattern.dat"
    assert len(source) == 9 and source.nav_shape == (3, 3) and source.pattern_shape == (60, 60)
    assert source.static_background is not None  # from Background acquisition pattern.bmp
    assert len(source.warnings) == 1 and "NORDIF acquisition" in source.warnings[0]


def test_a_scan_without_its_background_says_so(acquisition, recwarn):
    (acquisition / "Background acquisition pattern.bmp").unlink()
    source = open_patterns(acquisition / "Pattern.dat")
    assert source.static_background is None
    assert source.warnings == [
        "no Background acquisition pattern.bmp beside it: only the dynamic background is removed"
    ]
    assert not [w for w in recwarn if "static background" in str(w.message)]  # kikuchipy's, with the server's path


def test_a_scan_without_its_setting_file_names_what_is_missing(acquisition):
    (acquisition / "Setting.txt").unlink()
    with pytest.raises(InputError, match=r"Pattern\.dat: a NORDIF scan is read with the Setting\.txt"):
        open_patterns(acquisition / "Pattern.dat")


def test_a_zipped_acquisition_is_refused_with_what_to_do(acquisition, tmp_path):
    archive = tmp_path / "ni_scan.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ACQUISITION:
            zipped.write(acquisition / name, f"ni_scan/{name}")
    with pytest.raises(InputError, match="ni_scan.zip: holds a NORDIF acquisition.*upload the .dat with Setting.txt"):
        open_patterns(archive)


def test_several_scans_in_one_acquisition_folder_are_not_guessed(acquisition):
    (acquisition / "Pattern.dat").rename(acquisition / "first.dat")
    shutil.copy(acquisition / "first.dat", acquisition / "second.dat")
    with pytest.raises(InputError, match="2 .dat files .*give the one to read"):
        open_patterns(acquisition)


def test_scan_files_beside_images_are_named_as_not_read(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(folder / "iq_map.bmp")
    (folder / "scan.up2").write_bytes(b"\0" * 64)
    source = open_patterns(folder)
    assert len(source) == 1
    assert any("scan.up2" in warning and "not read" in warning for warning in source.warnings)


def test_upload_roles():
    names = [*ACQUISITION, "Area.bmp", "fe.png"]
    roles = nordif.upload_roles([name.lower() if name == "Setting.txt" else name for name in names])
    assert roles == {
        "Pattern.dat": "file",
        "setting.txt": "companion",
        "Background acquisition pattern.bmp": "companion",
        "Background calibration pattern.bmp": "side image",
        "Calibration (294,532).bmp": "side image",
        "Calibration (425,447).bmp": "side image",
        "Area.bmp": "side image",
        "fe.png": "file",
    }
    assert nordif.companion_name("setting.txt") == "Setting.txt"
    # without a scan among them, nothing is set aside: a lone Setting.txt is refused as an unsupported file
    assert nordif.upload_roles(["Setting.txt", "Calibration (1,2).bmp"]) == {
        "Setting.txt": "file",
        "Calibration (1,2).bmp": "file",
    }


def test_a_setting_file_of_another_scan_is_refused_with_both_sizes(acquisition):
    """Found on review: a Setting.txt giving more patterns than Pattern.dat holds opened, and the scan failed only
    when its patterns were read (with fewer, it would have been cut short without a word)."""
    setting = acquisition / "Setting.txt"
    text = setting.read_bytes()
    assert b"Number of samples\t3x3" in text
    setting.write_bytes(text.replace(b"Number of samples\t3x3", b"Number of samples\t4x4"))
    with pytest.raises(
        InputError, match=r"gives 4 x 4 patterns of 60x60 px \(57,600 bytes\) and the file holds 32,400"
    ):
        open_patterns(acquisition)
    setting.write_bytes(text.replace(b"Number of samples\t3x3", b"Number of samples\t2x2"))
    with pytest.raises(InputError, match="a Setting.txt written for another scan"):
        open_patterns(acquisition / "Pattern.dat")


def test_a_setting_file_kikuchipy_cannot_parse_is_named(acquisition):
    (acquisition / "Setting.txt").write_text("not a NORDIF setting file\n")
    with pytest.raises(InputError, match="the Setting.txt beside it cannot be read: a line kikuchipy reads there does"):
        open_patterns(acquisition)


def test_the_files_of_several_scans_are_not_paired_by_guess():
    """Each NORDIF scan's files have the same names: in one upload, which Setting.txt is whose is lost."""
    with pytest.raises(InputError, match=r"several NORDIF scans at once \(Pattern.dat, Pattern.dat\)"):
        nordif.upload_roles(["Pattern.dat", "Setting.txt", "Pattern.dat", "Setting.txt"])
    with pytest.raises(InputError, match=r"several NORDIF scans at once \(ni.dat, ni3al.dat\)"):
        nordif.upload_roles(["ni.dat", "ni3al.dat", "Setting.txt"])
