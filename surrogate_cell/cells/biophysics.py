"""Hay et al. (2011) layer-5b pyramidal cell biophysics, applied to any loaded morphology.

Numbers are those of ``hay_l5pc_biophysics.md`` (the published model). Densities are in
S/cm2, calcium decay in ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from neuron import h

NSEG_LENGTH_UM = 40.0
AXON_STUB_LENGTH_UM = 30.0
AXON_STUB_DIAM_UM = 1.0

PASSIVE_DEFAULT = {"cm": 1.0, "Ra": 100.0, "e_pas": -90.0, "g_pas": 3e-5}
PASSIVE_DENDRITE = {"cm": 2.0, "g_pas": 6e-5}
E_K = -85.0
E_NA = 50.0

UNIFORM_DENSITIES: dict[str, dict[str, float]] = {
    "soma": {
        "NaTs2_t": 0.998912, "SKv3_1": 0.338029, "SK_E2": 0.09965, "Im": 0.000008,
        "Ca_HVA": 0.000644, "Ca_LVAst": 0.000557, "Ih": 0.000075,
    },
    "axon": {
        "NaTa_t": 3.89618, "Nap_Et2": 0.005834, "K_Pst": 0.188851, "K_Tst": 0.077274,
        "SKv3_1": 0.473799, "SK_E2": 0.000047, "Im": 0.013322, "Ca_HVA": 0.000222,
        "Ca_LVAst": 0.000813, "Ih": 0.00005,
    },
    "apic": {
        "NaTs2_t": 0.021489, "SKv3_1": 0.001808, "SK_E2": 0.000002, "Im": 0.00099,
        "Ca_HVA": 0.000701,
    },
    "dend": {"Ih": 0.00005},
}
CALCIUM_DYNAMICS = {
    "soma": {"decay": 294.679571, "gamma": 0.000509},
    "axon": {"decay": 277.300774, "gamma": 0.000525},
    "apic": {"decay": 35.725651, "gamma": 0.000637},
}


@dataclass(frozen=True)
class ApicalDistanceRules:
    """Distance-dependent apical densities of Ih and Ca_LVAst (path distance from the soma centre)."""

    ih_scale: float = 1e-4
    ih_offset: float = -0.8696
    ih_amplitude: float = 2.087
    ih_rate: float = 3.6161
    ih_x_cap: float = 0.65
    ca_lva_hot_zone_um: tuple[float, float] = (685.0, 885.0)
    ca_lva_hot: float = 0.2271264
    ca_lva_cold: float = 0.002271264

    def ih(self, distance_um: float, max_distance_um: float) -> float:
        """Ih density at a path distance, given the longest apical path distance."""
        x = min(distance_um / max_distance_um, self.ih_x_cap)
        return self.ih_scale * (self.ih_offset + self.ih_amplitude * math.exp(self.ih_rate * x))

    def ca_lva(self, distance_um: float) -> float:
        """Ca_LVAst density: 100x higher inside the calcium hot zone."""
        low, high = self.ca_lva_hot_zone_um
        return self.ca_lva_hot if low < distance_um < high else self.ca_lva_cold


@dataclass(frozen=True)
class HayBiophysics:
    """All biophysical parameters of the Hay L5PC; every number can be overridden."""

    uniform_densities: dict = field(default_factory=lambda: UNIFORM_DENSITIES)
    calcium_dynamics: dict = field(default_factory=lambda: CALCIUM_DYNAMICS)
    apical_rules: ApicalDistanceRules = field(default_factory=ApicalDistanceRules)


def section_kind(section) -> str:
    """Return 'soma', 'axon', 'dend' (basal) or 'apic' from a NEURON section's name."""
    name = section.name().split(".")[-1]
    for kind in ("soma", "axon", "apic", "dend"):
        if name.startswith(kind):
            return kind
    return "other"


def nseg_for_length(length_um: float) -> int:
    """The Hay model's segment rule: ``1 + 2 * int(L / 40)``."""
    return 1 + 2 * int(length_um / NSEG_LENGTH_UM)


def replace_axon(soma, apical_direction) -> list:
    """Delete every axon section and attach the model's 2 x 30 um axon stub to ``soma(0.5)``.

    The stub points away from the apical dendrite. Returns the two new sections.
    """
    for sec in [sec for sec in h.allsec() if section_kind(sec) == "axon"]:
        h.delete_section(sec=sec)
    h("create axon[2]")
    stub = [h.axon[0], h.axon[1]]
    centre = _section_midpoint(soma)
    direction = [-c for c in apical_direction]
    for index, sec in enumerate(stub):
        sec.L = AXON_STUB_LENGTH_UM
        sec.nseg = 1
        h.pt3dclear(sec=sec)
        for end in (index, index + 1):
            point = [centre[i] + direction[i] * AXON_STUB_LENGTH_UM * end for i in range(3)]
            h.pt3dadd(*point, AXON_STUB_DIAM_UM, sec=sec)
    stub[0].connect(soma(0.5), 0)
    stub[1].connect(stub[0](1), 0)
    return stub


def _section_midpoint(sec) -> list[float]:
    n = int(h.n3d(sec=sec))
    first, last = 0, n - 1
    return [
        0.5 * (getattr(h, axis)(first, sec=sec) + getattr(h, axis)(last, sec=sec))
        for axis in ("x3d", "y3d", "z3d")
    ]


def apical_direction(soma, apical_sections) -> list[float]:
    """Unit vector from the soma centre to the mean of the apical sections' far ends."""
    centre = _section_midpoint(soma)
    ends = [
        [getattr(h, axis)(int(h.n3d(sec=sec)) - 1, sec=sec) for axis in ("x3d", "y3d", "z3d")]
        for sec in apical_sections
    ]
    vector = [sum(end[i] for end in ends) / len(ends) - centre[i] for i in range(3)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def fix_zero_diameters(sections) -> None:
    """Set diam = 1 um wherever a reconstruction has diam == 0 (as the published model does)."""
    for sec in sections:
        for i in range(int(h.n3d(sec=sec))):
            if h.diam3d(i, sec=sec) == 0:
                h.pt3dchange(i, 1.0, sec=sec)


def insert_passive(sec, kind: str) -> None:
    """Insert the leak and set cm/Ra; basal and apical dendrites get cm = 2, g_pas = 6e-5."""
    sec.insert("pas")
    sec.Ra = PASSIVE_DEFAULT["Ra"]
    sec.cm = PASSIVE_DEFAULT["cm"]
    sec.e_pas = PASSIVE_DEFAULT["e_pas"]
    sec.g_pas = PASSIVE_DEFAULT["g_pas"]
    if kind in ("dend", "apic"):
        sec.cm = PASSIVE_DENDRITE["cm"]
        sec.g_pas = PASSIVE_DENDRITE["g_pas"]


def insert_uniform_channels(sec, kind: str, biophysics: HayBiophysics) -> None:
    """Insert the channels of a section type at their uniform densities, plus calcium dynamics."""
    densities = biophysics.uniform_densities.get(kind, {})
    for channel, gbar in densities.items():
        sec.insert(channel)
        for seg in sec:
            setattr(seg, f"gbar_{channel}", gbar)
    if kind in biophysics.calcium_dynamics:
        sec.insert("CaDynamics_E2")
        for seg in sec:
            for name, value in biophysics.calcium_dynamics[kind].items():
                setattr(seg, f"{name}_CaDynamics_E2", value)
    if any(channel.startswith("Na") for channel in densities):
        sec.ena = E_NA
    if any(channel.startswith(("K_", "SK", "Im")) for channel in densities):
        sec.ek = E_K


def insert_apical_distance_channels(apical_sections, soma, rules: ApicalDistanceRules) -> float:
    """Set Ih and Ca_LVAst per apical segment from its path distance; return the longest distance."""
    h.distance(0, soma(0.5))
    max_distance = max(h.distance(sec(1)) for sec in apical_sections)
    for sec in apical_sections:
        sec.insert("Ih")
        sec.insert("Ca_LVAst")
        for seg in sec:
            distance = h.distance(seg)
            seg.gbar_Ih = rules.ih(distance, max_distance)
            seg.gbar_Ca_LVAst = rules.ca_lva(distance)
    return max_distance


def apply_hay_biophysics(sections_by_kind: dict, biophysics: HayBiophysics | None = None) -> float:
    """Give every section the Hay L5PC membrane; returns the longest apical path distance (um)."""
    biophysics = biophysics or HayBiophysics()
    soma = sections_by_kind["soma"][0]
    for kind, sections in sections_by_kind.items():
        for sec in sections:
            sec.nseg = 1 if kind == "axon" else nseg_for_length(sec.L)
            insert_passive(sec, kind)
            insert_uniform_channels(sec, kind, biophysics)
    return insert_apical_distance_channels(sections_by_kind["apic"], soma, biophysics.apical_rules)
