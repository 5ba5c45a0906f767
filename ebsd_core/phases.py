"""Catalogue of cubic m-3m phases: space group, lattice parameter and atom sites.

Atom sites are the asymmetric unit in the standard setting of the International
Tables; for the two-origin group Fd-3m the positions use origin choice 2 (origin
on an inversion centre, Si at 1/8,1/8,1/8), which is also de-ebsd's default.
Users add phases from CIF files with :func:`phase_from_cif`.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebsd_core.errors import EMPTY_FILE, PhaseError
from ebsd_core.shared_state import silenced_output
from ebsd_core.wording import is_whole_number, slug

#: The ten space groups of point group m-3m, number -> Hermann-Mauguin symbol.
M3M_SPACE_GROUPS: dict[int, str] = {
    221: "Pm-3m",
    222: "Pn-3n",
    223: "Pm-3n",
    224: "Pn-3m",
    225: "Fm-3m",
    226: "Fm-3c",
    227: "Fd-3m",
    228: "Fd-3c",
    229: "Im-3m",
    230: "Ia-3d",
}

#: The six classes of Kaufmann et al. (2021).
DEFAULT_CLASSES: tuple[int, ...] = (221, 223, 225, 227, 229, 230)

Site = tuple[str, tuple[float, float, float], float]

#: Position of origin choice 2 in origin-1 coordinates for the two-origin m-3m groups
#: (International Tables): x(origin 1) = x(origin 2) + shift. Catalogue sites use origin 2;
#: diffpy and orix tabulate origin 1.
ORIGIN2_SHIFT: dict[int, float] = {222: -0.25, 224: -0.25, 227: -0.125, 228: -0.375}


@dataclass(frozen=True)
class Material:
    """One crystalline phase that patterns can be simulated for.

    Parameters
    ----------
    key
        Short identifier used on the command line, e.g. ``"ni3al"``.
    name
        Human-readable name, e.g. ``"Ni3Al (L1_2, gamma prime)"``.
    space_group
        International Tables number (221-230 for m-3m).
    a
        Cubic lattice parameter in angstrom.
    sites
        Asymmetric unit: ``(element, (x, y, z), occupancy)``.
    debye_waller
        Isotropic Debye-Waller factor B in nm^2 (EMsoft convention).
    """

    key: str
    name: str
    space_group: int
    a: float
    sites: tuple[Site, ...]
    debye_waller: float = 0.005
    source: str = "catalogue"
    notes: str = field(default="", compare=False)

    @property
    def symbol(self) -> str:
        return space_group_symbol(self.space_group)

    @property
    def short_name(self) -> str:
        """The name without its note in brackets (``"Ni3Al"``), as a phase map and its exports name the phase."""
        return self.name.split(" (")[0].strip() or self.key

    @property
    def choice_label(self) -> str:
        """How a picker shows it: the key typed on the command line, the name and the space group."""
        return f"{self.key}: {self.name}, {self.symbol}"

    def to_orix_phase(self):
        """An orix ``Phase`` with the full (expanded) unit cell."""
        from diffpy.structure import Atom, Lattice, Structure
        from orix.crystal_map import Phase

        lattice = Lattice(self.a, self.a, self.a, 90, 90, 90)
        shift = ORIGIN2_SHIFT.get(self.space_group, 0.0)
        atoms = [Atom(el, np.mod(np.add(xyz, shift), 1.0), occupancy=occ) for el, xyz, occ in self.sites]
        phase = Phase(
            name=self.key,
            space_group=self.space_group,
            structure=Structure(atoms=atoms, lattice=lattice),
        )
        return phase.expand_asymmetric_unit()

    def describe(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "space_group": self.space_group,
            "symbol": self.symbol,
            "a_angstrom": self.a,
            "sites": [[el, list(xyz), occ] for el, xyz, occ in self.sites],
            "source": self.source,
        }


def _m(key, name, sg, a, *sites, **kw) -> Material:
    full = tuple((el, tuple(float(v) for v in xyz), 1.0) for el, xyz in sites)
    return Material(key=key, name=name, space_group=sg, a=a, sites=full, **kw)


_A15 = ((0.0, 0.0, 0.0), (0.25, 0.0, 0.5))  # B at 2a, A at 6c
_DIAMOND = (0.125, 0.125, 0.125)  # 8a, origin choice 2
_GARNET_X, _GARNET_C, _GARNET_D = (0.0, 0.0, 0.0), (0.125, 0.0, 0.25), (0.375, 0.0, 0.25)

CATALOGUE: dict[str, Material] = {
    m.key: m
    for m in (
        # Pm-3m 221: B2 and L1_2 ordered alloys, CsCl
        _m("nial", "NiAl (B2)", 221, 2.887, ("Ni", (0, 0, 0)), ("Al", (0.5, 0.5, 0.5))),
        _m("feal", "FeAl (B2)", 221, 2.909, ("Fe", (0, 0, 0)), ("Al", (0.5, 0.5, 0.5))),
        _m("cscl", "CsCl", 221, 4.123, ("Cs", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))),
        _m("ni3al", "Ni3Al (L1_2, gamma prime)", 221, 3.567, ("Al", (0, 0, 0)), ("Ni", (0, 0.5, 0.5))),
        _m("cu3au", "Cu3Au (L1_2)", 221, 3.749, ("Au", (0, 0, 0)), ("Cu", (0, 0.5, 0.5))),
        _m("pt3fe", "Pt3Fe (L1_2)", 221, 3.873, ("Fe", (0, 0, 0)), ("Pt", (0, 0.5, 0.5))),
        _m("al3sc", "Al3Sc (L1_2)", 221, 4.103, ("Sc", (0, 0, 0)), ("Al", (0, 0.5, 0.5))),
        # Pm-3n 223: A15 compounds
        _m("cr3si", "Cr3Si (A15)", 223, 4.558, ("Si", _A15[0]), ("Cr", _A15[1])),
        _m("nb3sn", "Nb3Sn (A15)", 223, 5.290, ("Sn", _A15[0]), ("Nb", _A15[1])),
        _m("v3si", "V3Si (A15)", 223, 4.725, ("Si", _A15[0]), ("V", _A15[1])),
        # Fm-3m 225: fcc metals, austenite, rock salt
        _m("ni", "Ni", 225, 3.524, ("Ni", (0, 0, 0))),
        _m("cu", "Cu", 225, 3.615, ("Cu", (0, 0, 0))),
        _m("al", "Al", 225, 4.049, ("Al", (0, 0, 0))),
        _m("austenite", "Austenite (gamma-Fe)", 225, 3.595, ("Fe", (0, 0, 0))),
        _m("nacl", "NaCl", 225, 5.640, ("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))),
        # Fd-3m 227 (origin choice 2): diamond-cubic elements
        _m("si", "Si", 227, 5.431, ("Si", _DIAMOND)),
        _m("ge", "Ge", 227, 5.658, ("Ge", _DIAMOND)),
        _m("diamond", "Diamond (C)", 227, 3.567, ("C", _DIAMOND)),
        # Im-3m 229: bcc metals
        _m("ferrite", "Ferrite (alpha-Fe)", 229, 2.866, ("Fe", (0, 0, 0))),
        _m("w", "W", 229, 3.165, ("W", (0, 0, 0))),
        _m("mo", "Mo", 229, 3.147, ("Mo", (0, 0, 0))),
        _m("ta", "Ta", 229, 3.303, ("Ta", (0, 0, 0))),
        # Ia-3d 230: garnets (16a, 24c, 24d, 96h)
        _m(
            "yag",
            "YAG (Y3Al5O12 garnet)",
            230,
            12.000,
            ("Y", _GARNET_C),
            ("Al", _GARNET_X),
            ("Al", _GARNET_D),
            ("O", (-0.0306, 0.0512, 0.1500)),
        ),
        _m(
            "grossular",
            "Grossular (Ca3Al2Si3O12 garnet)",
            230,
            11.851,
            ("Ca", _GARNET_C),
            ("Al", _GARNET_X),
            ("Si", _GARNET_D),
            ("O", (0.0381, 0.0449, 0.6514)),
        ),
        _m(
            "almandine",
            "Almandine (Fe3Al2Si3O12 garnet)",
            230,
            11.526,
            ("Fe", _GARNET_C),
            ("Al", _GARNET_X),
            ("Si", _GARNET_D),
            ("O", (0.0340, 0.0490, 0.6530)),
        ),
    )
}


def space_group_symbol(number: int) -> str:
    """Hermann-Mauguin symbol of an m-3m space group, e.g. ``225 -> "Fm-3m"``."""
    try:
        return M3M_SPACE_GROUPS[int(number)]
    except (KeyError, ValueError, TypeError):
        raise PhaseError(
            f"space group {number!r} is not one of the cubic m-3m groups {sorted(M3M_SPACE_GROUPS)}"
        ) from None


#: What symbols are written with besides letters and digits: spaces ("F m -3 m", as CIF files write them), minus
#: signs (also U+2212) and bars over the 3 (U+0304, U+0305 combining; U+203E): "Fm3m", "Fm−3m" and "Fm3̄m" are Fm-3m.
_SYMBOL_MARKS = str.maketrans("", "", " _-\u2212\u0304\u0305\u203e")


def _symbol_key(symbol: str) -> str:
    return symbol.translate(_SYMBOL_MARKS).lower()


def parse_space_group(text: str | int) -> int:
    """Accept ``225``, ``"225"`` or ``"Fm-3m"`` and return the number.

    Symbols are read case-insensitively and as written by hand or by CIF files: ``"Fm3m"``, ``"F m -3 m"``,
    ``"Fm−3m"`` (a minus sign) and ``"Fm3̄m"`` (a bar over the 3) are all 225.
    """
    if isinstance(text, (int, np.integer)):
        space_group_symbol(int(text))
        return int(text)
    cleaned = str(text).strip()
    if is_whole_number(cleaned) and int(cleaned) in M3M_SPACE_GROUPS:
        return int(cleaned)
    by_symbol = {_symbol_key(v): k for k, v in M3M_SPACE_GROUPS.items()}
    if cleaned and _symbol_key(cleaned) in by_symbol:
        return by_symbol[_symbol_key(cleaned)]
    six = ", ".join(M3M_SPACE_GROUPS[k] for k in DEFAULT_CLASSES)
    other = any_space_group(cleaned)
    if other in M3M_SPACE_GROUPS:  # "Fd-3m:2": an origin choice
        return other
    if other is not None:  # Ti's "P6_3/mmc": a space group, but not one a model here tells apart
        raise PhaseError(f"{cleaned!r} is {space_group_words(cleaned)}, {NOT_TOLD_APART} (such as {six})")
    raise PhaseError(f"unknown space group {text!r}: use a number 221-230 or a symbol such as {six}")


def _written_key(symbol: str) -> str:
    """A symbol as a folder or file name can write it: no slashes, underscores or spaces (``"P63mmc"``)."""
    return symbol.translate(str.maketrans("\u2212", "-", "/_ ")).lower()


@functools.cache
def _every_space_group() -> dict[str, tuple[int, str]]:
    """The 230 space groups' numbers and symbols by their symbols' written keys, in every setting diffpy knows
    (``"r-3m"``: 166, ``"R-3m"``); a key that two groups shared would be left out (none is)."""
    from diffpy.structure.spacegroups import SpaceGroupList

    found: dict[str, set[tuple[int, str]]] = {}
    for group in SpaceGroupList:
        number = group.number % 1000  # settings other than the standard one are numbered from 1000 (R-3m's 1166)
        for symbol in (group.short_name, group.pdb_name):
            found.setdefault(_written_key(symbol), set()).add((number, group.short_name))
    return {key: min(named) for key, named in found.items() if len({number for number, _ in named}) == 1}


def _named_space_group(text: str) -> tuple[int, str] | None:
    cleaned = re.sub(r":\w+$", "", str(text).strip())
    if is_whole_number(cleaned):
        return (int(cleaned), _standard_symbol(int(cleaned))) if 1 <= int(cleaned) <= 230 else None
    return _every_space_group().get(_written_key(cleaned)) if cleaned else None


def _standard_symbol(number: int) -> str:
    from diffpy.structure.spacegroups import GetSpaceGroup

    symbol = GetSpaceGroup(number).short_name
    return "R" + symbol[1:] if symbol.startswith("H") else symbol  # diffpy's H-3m: R-3m on hexagonal axes


def any_space_group(text: str) -> int | None:
    """The number of any of the 230 space groups that a number or a Hermann-Mauguin symbol names, as written by hand,
    by CIF files or in a folder's name: ``"194"``, ``"P6_3/mmc"``, ``"P63mmc"`` and ``"P 63/m m c"`` are 194,
    ``"Fd-3m:2"`` (an origin choice) 227; None for anything else."""
    named = _named_space_group(text)
    return named[0] if named else None


#: Why a space group other than the cubic m-3m ones is not a class here.
NOT_TOLD_APART = "not one of the cubic m-3m space groups 221-230 this tool tells apart"


def space_group_words(text: str) -> str | None:
    """How a message names the space group that ``text`` names (``"P63mmc"``: ``"space group 194 (P63/mmc)"``),
    or None when it names none."""
    named = _named_space_group(text)
    if named is None:
        return None
    return "space group {} ({})".format(*named)


#: Names labs give a phase (a class folder, a scan's label) that do not say which of the space groups sharing a
#: lattice is meant, or that name a structure no model here tells apart.
PHASE_NAME_HINTS = {
    "fe": "iron: ferrite is Im-3m (229), austenite Fm-3m (225)",
    "iron": "ferrite is Im-3m (229), austenite Fm-3m (225)",
    "fcc": "an FCC metal is Fm-3m (225), diamond-cubic Si or Ge Fd-3m (227), L1_2 Ni3Al Pm-3m (221)",
    "bcc": "a BCC metal is Im-3m (229), B2 NiAl or CsCl Pm-3m (221)",
    "ti": f"titanium: alpha-Ti is P6_3/mmc (194), {NOT_TOLD_APART}; beta-Ti is Im-3m (229)",
    "hcp": f"an HCP metal, Ti, Mg or Zr, is P6_3/mmc (194), {NOT_TOLD_APART}",
}


def space_group_of_label(text: str) -> int:
    """The space group a user's label of a phase names: a number or symbol (``225``, ``"Fm-3m"``) or a catalogue
    material (``"ni"``, as a class folder may be named).

    Raises
    ------
    PhaseError
        Naming what the label may have meant (``"Fe"``: ferrite or austenite; ``"nickel"``: ni).
    """
    try:
        return parse_space_group(text)
    except PhaseError as not_a_group:
        if (found := catalogue_material(text)) is not None:
            return found.space_group
        label = str(text).strip()
        if label.lower() in PHASE_NAME_HINTS:
            raise PhaseError(f"{label!r} does not name a space group ({PHASE_NAME_HINTS[label.lower()]})") from None
        if any_space_group(label) is not None:
            raise
        six = ", ".join(M3M_SPACE_GROUPS[k] for k in DEFAULT_CLASSES)
        raise PhaseError(
            f"unknown space group {label!r}{_meant_words(label)}: use a number 221-230, a symbol such as {six}, "
            "or a catalogue material ('python -m ebsd_core phases')"
        ) from not_a_group


def catalogue_material(key: str) -> Material | None:
    """The catalogue material of a key (case-insensitive), or None."""
    return CATALOGUE.get(str(key).strip().lower())


def get_material(key: str) -> Material:
    """Look up a catalogue material by key (case-insensitive)."""
    found = catalogue_material(key)
    if found is None:
        raise PhaseError(f"unknown phase {key!r}{_meant_words(str(key))}; known phases: {', '.join(sorted(CATALOGUE))}")
    return found


#: English names of the catalogue's elements, as a user may type them for its materials.
_ELEMENT_NAMES = {
    "iron": ("ferrite", "austenite"),
    "fe": ("ferrite", "austenite"),
    "nickel": ("ni",),
    "copper": ("cu",),
    "aluminium": ("al",),
    "aluminum": ("al",),
    "silicon": ("si",),
    "germanium": ("ge",),
    "carbon": ("diamond",),
    "tungsten": ("w",),
    "molybdenum": ("mo",),
    "tantalum": ("ta",),
}


def _bare(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _name_words(material: Material) -> set[str]:
    """The words of a material's name, alone and as its brackets group them: ``"Ni3Al (L1_2, gamma prime)"`` has
    ``ni3al``, ``l12``, ``gamma``, ``prime`` and ``gammaprime``; ``"Ferrite (alpha-Fe)"`` has ``fe``."""
    pieces = re.split(r"[\s(),-]+", material.name) + re.split(r"[(),]+", material.name)
    return {_bare(piece) for piece in pieces} - {""}


def _meant_words(key: str) -> str:
    """What an unknown phase key may have meant, as a clause of its message: a material by an English name (``iron``), a
    word of its name (``B2``, ``alpha-Fe``, ``garnet``), a space group's materials (``Fm-3m``) or a near spelling."""
    word = _bare(key)
    if not word:
        return ""
    meant = [CATALOGUE[k] for k in _ELEMENT_NAMES.get(word, ())] or [
        m for m in CATALOGUE.values() if word in _name_words(m)
    ]
    if not meant and (named := space_group_words(key)):
        group = any_space_group(key)
        if group not in M3M_SPACE_GROUPS:
            return f" (it names {named}, {NOT_TOLD_APART})"
        keys = ", ".join(m.key for m in materials_for(group))
        return (
            f" (it names {named}, whose materials here are {keys})"
            if keys
            else f" (it names {named}, which no material here has)"
        )
    if not meant:
        meant = [CATALOGUE[k] for k in difflib.get_close_matches(word, CATALOGUE, n=3, cutoff=0.75)]
    choices = [f"{m.key} ({m.name}, {m.symbol})" for m in meant]
    if len(choices) > 1:
        choices = [", ".join(choices[:-1]), choices[-1]]
    return f", perhaps {' or '.join(choices)}" if choices else ""


def material_label(key: str) -> str:
    """How a table or a title names a dataset's material: a catalogue one by its short name (``"Ni3Al"``), any other
    (a CIF file's, an uploaded folder's) by its key."""
    found = catalogue_material(key)
    return found.short_name if found is not None else str(key)


def materials_for(space_group: int) -> list[Material]:
    """All catalogue materials of one space group, in catalogue order."""
    return [m for m in CATALOGUE.values() if m.space_group == space_group]


def phase_from_cif(path: str | Path, key: str | None = None) -> Material:
    """Read a cubic m-3m phase from a CIF file.

    Raises
    ------
    PhaseError
        If the file cannot be parsed, the cell is not cubic, or the space group
        is not one of the m-3m groups.
    """
    path = Path(path)
    structure, space_group = _parsed_cif(path)
    lat = structure.lattice
    # diffpy numbers settings other than the standard one from 1000
    group = "" if space_group in M3M_SPACE_GROUPS else f"{space_group_words(str(space_group % 1000))}, {NOT_TOLD_APART}"
    if not (np.allclose([lat.a, lat.b], lat.c, rtol=1e-4) and np.allclose([lat.alpha, lat.beta, lat.gamma], 90)):
        shape = f"the cell is not cubic (a, b, c = {lat.a}, {lat.b}, {lat.c})"
        raise PhaseError(f"{shape}: {group}" if group else shape, path)
    if group:
        raise PhaseError(f"its phase is {group}", path)
    sites = _asymmetric_unit(structure, space_group)
    if not sites:
        raise PhaseError("the CIF file has no atom sites", path)
    if unknown := sorted({element for element, _, _ in sites if element not in _known_elements()}):
        raise PhaseError(
            f"its atom sites name {'elements' if len(unknown) > 1 else 'element'} {', '.join(map(repr, unknown))}, "
            "of which no scattering factors are known (elements H to Cf, by their symbols)",
            path,
        )
    key = key or slug(path.stem, "cif_phase")
    return Material(
        key=key, name=path.stem, space_group=space_group, a=float(lat.a), sites=sites, source=f"cif:{path.name}"
    )


def _parsed_cif(path: Path) -> tuple[object, int]:
    """The structure of a CIF file and its space group's number (diffpy's), or a PhaseError in words a user can act
    on (found on review: "AttributeError: 'NoneType' object has no attribute 'number'" for an empty file or one
    without atoms, a page of PyCifRW's syntax error printed, and a cell without lengths read as 1 Angstrom)."""
    from diffpy.structure.parsers import getParser

    if not path.is_file():
        raise PhaseError("no such file", path)
    raw = path.read_bytes()
    try:
        text, latin = raw.decode("utf-8"), False
    except UnicodeDecodeError:  # written on an older system: an author's name or a comment's "Å" in Latin-1
        text, latin = raw.decode("latin-1"), True
    if not text.strip():
        raise PhaseError(EMPTY_FILE, path)
    parser = getParser("cif")
    try:
        with silenced_output() as printed:  # PyCifRW prints a syntax error at length
            structure = parser.parse(text) if latin else parser.parseFile(str(path))
    except Exception as exc:  # diffpy raises many types for malformed CIFs
        raise PhaseError(f"cannot read this CIF file ({_cif_problem(exc, printed.getvalue())})", path) from None
    if structure is None or len(structure) == 0:
        raise PhaseError("the CIF file has no atom sites", path)
    if parser.spacegroup is None:
        raise PhaseError(
            "the CIF file gives no space group (_space_group_IT_number or _symmetry_space_group_name_H-M)", path
        )
    if missing := [name for name in CELL_ITEMS if not re.search(rf"^\s*{name}\s", text, re.MULTILINE | re.IGNORECASE)]:
        raise PhaseError(f"the CIF file gives no {', '.join(missing)}: the size of its cell is not known", path)
    return structure, int(parser.spacegroup.number)


#: The cell lengths a CIF file must give (diffpy takes 1 Angstrom for one that is absent).
CELL_ITEMS = ("_cell_length_a", "_cell_length_b", "_cell_length_c")


def _cif_problem(exc: Exception, printed: str) -> str:
    """What diffpy's (or PyCifRW's) error says of a CIF file, with the line PyCifRW printed where it did."""
    message = str(exc)
    if found := re.search(r"SyntaxError@char\d+\((.*)\)", message, re.DOTALL):
        line = re.search(r"SYNTAX ERROR AT LINE (\d+)", printed)
        return f"its text is not CIF{f' at line {line[1]}' if line else ''}: {found[1]}"
    if found := re.search(r"Star Format error: (.*)$", message):
        return f"its text is not CIF: {found[1]}"
    if found := re.search(r"No such item: (\S+?)'?$", message):
        return f"it gives no {found[1]}"
    if found := re.search(r"could not convert string to float: (.*)", message):
        return f"a number in it cannot be read: {found[1]}"
    if found := re.search(r"unknown space group identifier '(.*)'", message):
        if not found[1]:
            return "it gives no space group (_space_group_IT_number or _symmetry_space_group_name_H-M)"
        return f"its space group '{found[1]}' is not one diffpy.structure knows"
    return f"{exc.__class__.__name__}: {exc}"


@functools.cache
def _known_elements() -> frozenset[str]:
    """The elements whose electron scattering factors the simulators have (diffsims' table, H to Cf, as de-ebsd's)."""
    from diffsims.utils.atomic_scattering_params import ATOMIC_SCATTERING_PARAMS

    return frozenset(ATOMIC_SCATTERING_PARAMS)


def _symmetry_operations(space_group: int, origin: int) -> list:
    """Symmetry operations as callables on fractional coordinates, in origin 1 or 2."""
    from diffpy.structure.spacegroups import GetSpaceGroup

    ops = list(GetSpaceGroup(space_group).iter_symops())
    shift = ORIGIN2_SHIFT.get(space_group, 0.0) if origin == 2 else 0.0
    if not shift:
        return ops
    return [lambda x, op=op: op(np.asarray(x) + shift) - shift for op in ops]


def _orbit(xyz: np.ndarray, ops) -> np.ndarray:
    images = np.mod(np.array([op(xyz) for op in ops]), 1.0)
    images[np.isclose(images, 1.0, atol=1e-4)] = 0.0
    return np.unique(np.round(images, 4), axis=0)


def _asymmetric_unit(structure, space_group: int) -> tuple[Site, ...]:
    """Reduce a (possibly expanded) structure to one atom per orbit, in origin choice 2.

    The CIF may be written in either origin of a two-origin group; the origin
    whose orbits reproduce the file's full cell exactly is the one it uses.
    """
    atoms = [
        (
            re.sub(r"[^A-Za-z]", "", a.element)[:2].capitalize(),
            np.mod(np.asarray(a.xyz, float), 1.0),
            float(a.occupancy),
        )
        for a in structure
    ]
    origins = (2, 1) if space_group in ORIGIN2_SHIFT else (1,)
    candidates = []
    for origin in origins:
        ops = _symmetry_operations(space_group, origin)
        kept, covered = [], []
        for element, xyz, occ in atoms:
            if any(el == element and _contains(orbit, xyz) for el, orbit in covered):
                continue
            covered.append((element, _orbit(xyz, ops)))
            kept.append((element, xyz, occ))
        shift = ORIGIN2_SHIFT.get(space_group, 0.0) if origin == 1 else 0.0
        sites = tuple((el, tuple(float(v) for v in np.mod(xyz - shift, 1.0)), occ) for el, xyz, occ in kept)
        if sum(len(orbit) for _, orbit in covered) == len(atoms):
            return sites
        candidates.append(sites)
    return candidates[0] if candidates else ()


def _contains(orbit: np.ndarray, xyz: np.ndarray) -> bool:
    diff = np.abs(orbit - np.round(np.mod(xyz, 1.0), 4))
    return bool(np.any(np.all(np.minimum(diff, 1 - diff) < 1e-3, axis=1)))
