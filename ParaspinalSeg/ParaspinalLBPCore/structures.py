"""The project's vocabulary, defined once: muscles, sides, vertebral levels, label values, colours, codes.

Every module refers to muscles by these names (``multifidus_left`` …: ``<group>_<side>``) and, in label
maps the project writes, by these values. Label values 1–8 are the muscles the user segments; 10–17 are
the other tissues only the digital phantom's ground truth carries. Levels are the lumbar vertebrae
L1–L5, cranial to caudal. A house test fails if a Lib spells out a list of these names itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ParaspinalLBPCore.errors import MissingKeyError

__all__ = [
    "ALL_STRUCTURES",
    "BY_NAME",
    "BY_VALUE",
    "LEVELS",
    "LEVEL_CODES",
    "MUSCLEMAP_LABEL_NAMES",
    "MUSCLES",
    "MUSCLE_CODES",
    "MUSCLE_GROUPS",
    "MUSCLE_NAMES",
    "PARASPINAL_GROUPS",
    "PARASPINAL_NAMES",
    "PHANTOM_TISSUES",
    "SCT_ANATOMICAL_STRUCTURE",
    "SCT_LEFT",
    "SCT_RIGHT",
    "SIDES",
    "TUM01_LABEL_NAMES",
    "Structure",
    "canonical_name",
    "default_label_names",
    "muscle_name",
    "structure",
]

SIDES: tuple[str, ...] = ("left", "right")
#: Muscle groups (a structure name is ``<group>_<side>``); the paraspinal ones are the trial's focus.
MUSCLE_GROUPS: tuple[str, ...] = ("multifidus", "erector_spinae", "psoas", "quadratus_lumborum")
PARASPINAL_GROUPS: tuple[str, ...] = MUSCLE_GROUPS[:2]
LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")

# SNOMED CT codes (as used by Slicer's terminology files, e.g. SlicerTotalSegmentator's).
SCT_ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
SCT_LEFT = ("SCT", "7771000", "Left")
SCT_RIGHT = ("SCT", "24028007", "Right")

#: SNOMED CT codes of the lumbar vertebrae (DICOM SR / TID 1500 finding sites).
LEVEL_CODES: dict[str, tuple[str, str, str]] = {
    "L1": ("SCT", "66794005", "L1 vertebra"),
    "L2": ("SCT", "14293000", "L2 vertebra"),
    "L3": ("SCT", "36470004", "L3 vertebra"),
    "L4": ("SCT", "11994002", "L4 vertebra"),
    "L5": ("SCT", "49668003", "L5 vertebra"),
}
MUSCLE_CODES: dict[str, tuple[str, str, str]] = {
    "multifidus": ("SCT", "5709001", "Multifidus muscles"),
    "erector_spinae": ("SCT", "44947003", "Erector spinae muscle"),
    "psoas": ("SCT", "64038003", "Psoas major muscle"),
    "quadratus_lumborum": ("SCT", "47560002", "Quadratus lumborum muscle"),
}


@dataclass(frozen=True)
class Structure:
    """One labelled structure: canonical name, label value, display colour (0–255 RGB)."""

    name: str
    value: int
    color: tuple[int, int, int]
    muscle: str | None = None  # multifidus / erector_spinae / psoas / quadratus_lumborum
    side: str | None = None  # left / right

    @property
    def display_name(self) -> str:
        """Human-readable name, e.g. 'Multifidus left'."""
        return self.name.replace("_", " ").capitalize()

    def terminology_entry(self) -> str:
        """Slicer terminology entry string (category~type~modifier with SCT codes)."""
        if self.muscle is None:
            return ""
        cat = "^".join(SCT_ANATOMICAL_STRUCTURE)
        typ = "^".join(MUSCLE_CODES[self.muscle])
        mod = "^".join(SCT_LEFT if self.side == "left" else SCT_RIGHT)
        return (
            "Segmentation category and type - 3D Slicer General Anatomy list"
            f"~{cat}~{typ}~{mod}~Anatomic codes - DICOM master list~^^~^^"
        )


MUSCLES: tuple[Structure, ...] = (
    Structure("multifidus_left", 1, (216, 101, 79), "multifidus", "left"),
    Structure("multifidus_right", 2, (241, 151, 90), "multifidus", "right"),
    Structure("erector_spinae_left", 3, (128, 174, 128), "erector_spinae", "left"),
    Structure("erector_spinae_right", 4, (111, 184, 210), "erector_spinae", "right"),
    Structure("psoas_left", 5, (183, 156, 220), "psoas", "left"),
    Structure("psoas_right", 6, (221, 130, 101), "psoas", "right"),
    Structure("quadratus_lumborum_left", 7, (230, 220, 70), "quadratus_lumborum", "left"),
    Structure("quadratus_lumborum_right", 8, (144, 238, 144), "quadratus_lumborum", "right"),
)

# Tissues present only in the phantom's ground-truth label map.
PHANTOM_TISSUES: tuple[Structure, ...] = (
    Structure("vertebral_body", 10, (241, 214, 145)),
    Structure("posterior_elements", 11, (212, 188, 102)),
    Structure("spinal_canal", 12, (100, 149, 237)),
    Structure("intervertebral_disc", 13, (188, 95, 75)),
    Structure("subcutaneous_fat", 14, (255, 250, 160)),
    Structure("skin", 15, (177, 122, 101)),
    Structure("abdominal_contents", 16, (196, 121, 79)),
    Structure("intermuscular_fat", 17, (250, 250, 210)),
)

ALL_STRUCTURES: tuple[Structure, ...] = MUSCLES + PHANTOM_TISSUES
BY_NAME: dict[str, Structure] = {s.name: s for s in ALL_STRUCTURES}
BY_VALUE: dict[int, Structure] = {s.value: s for s in ALL_STRUCTURES}
MUSCLE_NAMES: tuple[str, ...] = tuple(s.name for s in MUSCLES)
#: multifidus and erector spinae, left and right (label values 1–4).
PARASPINAL_NAMES: tuple[str, ...] = tuple(s.name for s in MUSCLES if s.muscle in PARASPINAL_GROUPS)


def muscle_name(group: str, side: str) -> str:
    """``muscle_name("multifidus", "left") == "multifidus_left"``; raises KeyError for unknown parts."""
    name = f"{group}_{side}"
    if group not in MUSCLE_GROUPS or side not in SIDES:
        raise MissingKeyError(f"unknown muscle {group!r}/{side!r}; groups {MUSCLE_GROUPS}, sides {SIDES}")
    return name


def structure(name: str) -> Structure:
    """Look up a structure by canonical name; raises KeyError naming the valid choices."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise MissingKeyError(f"unknown structure {name!r}; expected one of {', '.join(BY_NAME)}") from None


def default_label_names() -> dict[int, str]:
    """Value → name map for label maps written by this project (muscles only)."""
    return {s.value: s.name for s in MUSCLES}


# Label names of the real shared data sets (see ../shared/data/README.md).
TUM01_LABEL_NAMES = {
    1: "erector_spinae_right",
    2: "multifidus_right",
    3: "multifidus_left",
    4: "erector_spinae_left",
}
MUSCLEMAP_LABEL_NAMES = {
    1: "multifidus_right",
    2: "multifidus_left",
    3: "erector_spinae_right",
    4: "erector_spinae_left",
    5: "psoas_right",
    6: "psoas_left",
    7: "quadratus_lumborum_right",
    8: "quadratus_lumborum_left",
}


def canonical_name(name: str) -> str:
    """Map 'Multifidus left' / 'multifidus_left' / 'Multifidus (L)' style segment names to canonical
    ones (names that do not map are returned unchanged)."""
    key = name.strip().lower().replace("(l)", "left").replace("(r)", "right")
    key = "_".join(key.replace("-", " ").split())
    return key if key in BY_NAME else name
