import numpy as np
import pytest

from ebsd_core.errors import PhaseError
from ebsd_core.phases import (
    CATALOGUE,
    DEFAULT_CLASSES,
    any_space_group,
    get_material,
    materials_for,
    parse_space_group,
    phase_from_cif,
    space_group_of_label,
    space_group_symbol,
)


def test_default_classes_have_three_materials_each():
    assert DEFAULT_CLASSES == (221, 223, 225, 227, 229, 230)
    for sg in DEFAULT_CLASSES:
        assert len(materials_for(sg)) >= 3, sg


@pytest.mark.parametrize(
    "text,number",
    [
        ("225", 225),
        (229, 229),
        ("fm-3m", 225),
        ("Ia-3d", 230),
        (" Pm-3n ", 223),
        ("Fm3m", 225),  # the symbols before 1983 wrote no bar: Fm3m is Fm-3m, there is no other
        ("F m -3 m", 225),  # as CIF files write it
        ("Im\u22123m", 229),  # a minus sign
        ("Fd3\u0304m", 227),  # a bar over the 3
        ("Fd-3m:2", 227),  # an origin choice, as some tables and CIF files write it
    ],
)
def test_parse_space_group(text, number):
    assert parse_space_group(text) == number


@pytest.mark.parametrize("bad", ["P1", "194", "Fm-3", "", "-", 12])
def test_unknown_space_group_is_refused(bad):
    with pytest.raises(PhaseError, match="space group"):
        parse_space_group(bad)


def test_a_space_group_of_another_kind_is_named_as_such():
    """Ti's "P6_3/mmc" was an "unknown space group": it is one, but not one of the six a model here tells apart."""
    with pytest.raises(PhaseError, match=r"'P6_3/mmc' is space group 194 \(P63/mmc\), not one of the cubic m-3m"):
        parse_space_group("P6_3/mmc")
    with pytest.raises(PhaseError, match=r"'Fm-3' is space group 202 \(Fm-3\), not one of the cubic m-3m"):
        parse_space_group("Fm-3")
    with pytest.raises(PhaseError, match=r"'R-3m' is space group 166 \(R-3m\), not"):  # was 1166: diffpy's setting
        parse_space_group("R-3m")
    with pytest.raises(PhaseError, match=r"'P 63/m m c' is space group 194 "):  # as CIF files write it
        parse_space_group("P 63/m m c")


@pytest.mark.parametrize(
    "written, number",
    [("P63mmc", 194), ("P6_3mmc", 194), ("P4mmm", 123), ("P42mnm", 136), ("P-42m", 111), ("Fd-3m:2", 227), ("1", 1)],
)
def test_any_space_group_is_read_as_a_folder_name_can_write_it(written, number):
    """A folder's name has no slash: "P63mmc" is P6_3/mmc; minus signs are kept, as P4_2/m and P-42m differ."""
    assert any_space_group(written) == number


@pytest.mark.parametrize("written", ["hcp", "0", "231", "", "nickel"])
def test_what_names_no_space_group_is_none(written):
    assert any_space_group(written) is None
    with pytest.raises(PhaseError, match=r"unknown space group 'nickel'"):
        parse_space_group("nickel")


def test_unknown_phase_names_known_ones():
    with pytest.raises(PhaseError, match="known phases") as raised:
        get_material("unobtainium")
    assert "perhaps" not in str(raised.value)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("fe", "perhaps ferrite (Ferrite (alpha-Fe), Im-3m) or austenite (Austenite (gamma-Fe), Fm-3m);"),
        ("Nickel", "perhaps ni (Ni, Fm-3m);"),
        ("B2", "perhaps nial (NiAl (B2), Pm-3m) or feal (FeAl (B2), Pm-3m);"),
        ("L1_2", "perhaps ni3al (Ni3Al (L1_2, gamma prime), Pm-3m), cu3au (Cu3Au (L1_2), Pm-3m), pt3fe"),
        ("gamma-prime", "perhaps ni3al ("),
        ("ferite", "perhaps ferrite ("),
        ("Fm-3m", "(it names space group 225 (Fm-3m), whose materials here are ni, cu, al, austenite, nacl);"),
        ("222", "(it names space group 222 (Pn-3n), which no material here has);"),
        ("P63/mmc", "(it names space group 194 (P63/mmc), not one of the cubic m-3m"),
    ],
)
def test_unknown_phase_says_which_material_it_may_mean(typed, meant):
    with pytest.raises(PhaseError, match="known phases") as raised:
        get_material(typed)
    assert f"unknown phase {typed!r}{' ' if meant.startswith('(') else ', '}{meant}" in str(raised.value)
    assert space_group_symbol(227) == "Fd-3m"


def _structure_factor(key: str, hkl) -> float:
    from diffsims.crystallography import ReciprocalLatticeVector

    ref = ReciprocalLatticeVector(get_material(key).to_orix_phase(), hkl=np.atleast_2d(hkl))
    ref.calculate_structure_factor()
    return float(np.abs(ref.structure_factor)[0])


@pytest.mark.parametrize(
    "key,absent",
    [
        ("si", (2, 0, 0)),
        ("si", (2, 2, 2)),
        ("cr3si", (1, 0, 0)),
        ("yag", (1, 1, 0)),
        ("yag", (2, 0, 0)),
        ("ni", (1, 0, 0)),
        ("ferrite", (1, 1, 1)),
    ],
)
def test_extinctions(key, absent):
    assert _structure_factor(key, absent) < 1e-6


@pytest.mark.parametrize(
    "key,present", [("si", (1, 1, 1)), ("si", (4, 0, 0)), ("cr3si", (2, 1, 0)), ("yag", (2, 1, 1))]
)
def test_allowed_reflections_present(key, present):
    assert _structure_factor(key, present) > 1.0


@pytest.mark.parametrize(
    "key,superlattice,fundamental", [("ni3al", (1, 0, 0), (1, 1, 1)), ("nial", (1, 0, 0), (1, 1, 0))]
)
def test_superlattice_reflections_present_but_weak(key, superlattice, fundamental):
    weak, strong = _structure_factor(key, superlattice), _structure_factor(key, fundamental)
    assert 0.05 * strong < weak < 0.6 * strong


def test_orix_phase_expands_diamond_cell():
    assert len(get_material("si").to_orix_phase().structure) == 8
    assert len(get_material("ni3al").to_orix_phase().structure) == 4


CIF_TEMPLATE = """data_{name}
_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M '{hm}'
_symmetry_Int_Tables_number {number}
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
{sites}
"""


def test_phase_from_cif_origin1_diamond_becomes_origin2(tmp_path):
    path = tmp_path / "my_si.cif"
    path.write_text(CIF_TEMPLATE.format(name="si", a=5.431, hm="F d -3 m", number=227, sites="Si1 Si 0 0 0 1.0"))
    material = phase_from_cif(path)
    assert material.space_group == 227
    assert material.a == pytest.approx(5.431)
    assert material.key == "my_si"
    assert [(el, xyz) for el, xyz, _ in material.sites] == [("Si", (0.125, 0.125, 0.125))]
    assert len(material.to_orix_phase().structure) == 8


def test_phase_from_cif_rock_salt(tmp_path):
    path = tmp_path / "NaCl.cif"
    path.write_text(
        CIF_TEMPLATE.format(
            name="nacl", a=5.64, hm="F m -3 m", number=225, sites="Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"
        )
    )
    material = phase_from_cif(path)
    assert material.space_group == 225 and len(material.sites) == 2


def test_non_cubic_cif_refused(tmp_path):
    path = tmp_path / "hex.cif"
    path.write_text(
        CIF_TEMPLATE.format(name="x", a=3.0, hm="P 63/m m c", number=194, sites="Mg1 Mg 0.333 0.667 0.25 1")
    )
    with pytest.raises(PhaseError, match=r"hex.cif: its phase is space group 194 \(P63/mmc\), not one of the cubic"):
        phase_from_cif(path)
    path.write_text(path.read_text().replace("_cell_length_c 3.0", "_cell_length_c 5.2"))  # as Mg's cell is
    with pytest.raises(PhaseError, match=r"not cubic \(a, b, c = 3.0, 3.0, 5.2\): space group 194 \(P63/mmc\), not"):
        phase_from_cif(path)


def test_a_cif_of_an_m3m_group_with_a_cell_not_cubic_is_not_told_its_group_is_another(tmp_path):
    path = tmp_path / "ni.cif"
    path.write_text(CIF_TEMPLATE.format(name="ni", a=3.52, hm="F m -3 m", number=225, sites="Ni1 Ni 0 0 0 1"))
    path.write_text(path.read_text().replace("_cell_length_c 3.52", "_cell_length_c 3.60"))
    with pytest.raises(PhaseError, match=r"ni.cif: the cell is not cubic \(a, b, c = 3.52, 3.52, 3.6\)$"):
        phase_from_cif(path)


def test_a_cubic_cif_of_another_point_group_is_named_by_its_space_group(tmp_path):
    path = tmp_path / "pyrite.cif"
    path.write_text(CIF_TEMPLATE.format(name="fes2", a=5.42, hm="P a -3", number=205, sites="Fe1 Fe 0 0 0 1"))
    with pytest.raises(PhaseError, match=r"pyrite.cif: its phase is space group 205 \(Pa-3\), not one of the cubic"):
        phase_from_cif(path)


def test_malformed_cif_names_file(tmp_path):
    path = tmp_path / "broken.cif"
    path.write_text("data_x\n_cell_length_a five\nloop_\n_atom_site_label\n")
    with pytest.raises(PhaseError, match="broken.cif"):
        phase_from_cif(path)


def test_catalogue_keys_are_lowercase_identifiers():
    for key in CATALOGUE:
        assert key == key.lower() and key.isidentifier()


def test_a_cif_file_with_faults_is_told_which(tmp_path, capsys):
    """Found on review: an empty CIF file or one without atoms read as "AttributeError: 'NoneType' object has no
    attribute 'number'", one without cell lengths as a cell of 1 Angstrom, an unknown element ('Xx') passed on to
    the simulator (a traceback), and a syntax error printed a page of PyCifRW's text."""
    ni = CIF_TEMPLATE.format(name="ni", a=3.52, hm="F m -3 m", number=225, sites="Ni1 Ni 0 0 0 1")
    cases = {
        "": r"the file is empty$",
        "hello world\n": r"cannot read this CIF file \(its text is not CIF at line 1: Trying to find one of END",
        ni.replace("Ni1 Ni 0 0 0 1", "Ni1 Ni 0 0"): r"\(its text is not CIF at line 18: Incorrect number of loop",
        ni.replace("_cell_length_a 3.52", "_cell_length_a abc"): r"\(a number in it cannot be read: 'abc'\)$",
        ni.split("loop_")[0]: r"the CIF file has no atom sites$",
        "\n".join(line for line in ni.splitlines() if "_cell_length" not in line): (
            r"the CIF file gives no _cell_length_a, _cell_length_b, _cell_length_c: the size of its cell is not known"
        ),
        ni.replace("Ni1 Ni", "Xx1 Xx"): r"its atom sites name element 'Xx', of which no scattering factors are",
        "\n".join(line for line in ni.splitlines() if "_symmetry" not in line): r"\(it gives no space group \(_space",
        ni.replace("'F m -3 m'", "'Q q q'").replace("225", "999"): r"\(its space group '999' is not one diffpy",
    }
    for text, match in cases.items():
        path = tmp_path / "mine.cif"
        path.write_text(text)
        unread = "cannot read this CIF file " if match.startswith(r"\(") else ""
        with pytest.raises(PhaseError, match=rf"mine.cif: {unread}{match}"):
            phase_from_cif(path)
    # Latin-1, as a CIF written on an older system: its letters are read (found on review: refused as "neither UTF-8
    # nor ASCII", for an author's name), and bytes of no text are not CIF (found by fuzzing, as the next)
    path.write_bytes(ni.replace("data_ni", "data_ni\n# a in \xc5, by M\xfcller").encode("latin-1"))
    assert phase_from_cif(path).space_group == 225
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PhaseError, match=r"mine.cif: cannot read this CIF file \(its text is not CIF at line 1"):
        phase_from_cif(path)
    path.write_text(ni.replace("_cell_angle_alpha 90\n", ""))
    with pytest.raises(PhaseError, match=r"mine.cif: cannot read this CIF file \(it gives no _cell_angle_alpha\)$"):
        phase_from_cif(path)
    path.write_text(ni.replace("Ni1 Ni ", "Ni1 Ni2+ "))  # an ion's charge is left out, as before
    assert phase_from_cif(path).sites[0][0] == "Ni"
    assert "SYNTAX ERROR" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("label", "space_group"), [("Fm-3m", 225), ("229", 229), ("Fm3m", 225), ("ni", 225), ("Ni3Al", 221)]
)
def test_a_phase_is_labelled_by_its_space_group_or_a_catalogue_material(label, space_group):
    assert space_group_of_label(label) == space_group


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("BCC", "'BCC' does not name a space group (a BCC metal is Im-3m (229), B2 NiAl or CsCl Pm-3m (221))"),
        ("nickel", "unknown space group 'nickel', perhaps ni (Ni, Fm-3m): use a number 221-230, a symbol such as"),
        ("P63/mmc", "'P63/mmc' is space group 194 (P63/mmc), not one of the cubic m-3m space groups"),
        ("194", "'194' is space group 194 (P63/mmc), not one of the cubic m-3m space groups"),  # as a symbol is
        ("zzz", "unknown space group 'zzz': use a number 221-230, a symbol such as Pm-3m, Pm-3n, Fm-3m, Fd-3m, Im-3m,"),
    ],
)
def test_a_label_that_names_no_space_group_says_what_it_may_mean(label, message):
    with pytest.raises(PhaseError) as raised:
        space_group_of_label(label)
    assert str(raised.value).startswith(message)
