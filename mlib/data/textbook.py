"""Textbook crystal structures of well-known compounds (experimental room-temperature lattices), as CIF text.

Each is built from its space group, lattice constants and Wyckoff positions, as a user would bring a CIF:
these are experimental structures, not AFLOW's PBE relaxations. Sources: R. W. G. Wyckoff, *Crystal
Structures* vol. 1 (Wiley, 1963) for NaCl, MgO, Si and GaAs; corundum from Lewis, Schwarzenbach & Flack,
Acta Cryst. A 38, 733 (1982).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Textbook:
    formula: str
    name: str
    spacegroup: str
    lattice: tuple[float, ...]  # a (cubic) or a, c (hexagonal setting), A
    species: tuple[str, ...]
    coords: tuple[tuple[float, float, float], ...]  # one fractional position per Wyckoff site

    def cif(self) -> str:
        from pymatgen.core import Lattice, Structure

        lattice = Lattice.cubic(self.lattice[0]) if len(self.lattice) == 1 else Lattice.hexagonal(*self.lattice)
        structure = Structure.from_spacegroup(self.spacegroup, lattice, list(self.species), list(self.coords))
        return structure.to(fmt="cif")


TEXTBOOK: tuple[Textbook, ...] = (
    Textbook("NaCl", "rock salt", "Fm-3m", (5.640,), ("Na", "Cl"), ((0, 0, 0), (0.5, 0.5, 0.5))),
    Textbook("MgO", "periclase", "Fm-3m", (4.212,), ("Mg", "O"), ((0, 0, 0), (0.5, 0.5, 0.5))),
    Textbook("Si", "diamond-structure silicon", "Fd-3m", (5.431,), ("Si",), ((0, 0, 0),)),
    Textbook("GaAs", "zincblende", "F-43m", (5.653,), ("Ga", "As"), ((0, 0, 0), (0.25, 0.25, 0.25))),
    Textbook("Al2O3", "corundum", "R-3c", (4.7602, 12.9933), ("Al", "O"), ((0, 0, 0.35216), (0.30624, 0, 0.25))),
)
