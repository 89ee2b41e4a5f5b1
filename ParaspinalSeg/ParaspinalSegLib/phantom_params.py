"""Parameters of the digital lumbar MRI phantom (contract C3): dataclasses, YAML I/O and validation.

Every key is optional; an unknown key or a bad value raises ValueError/KeyError naming the key, so
a typo in a user's ``phantom.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError
from ParaspinalLBPCore.structures import LEVELS, MUSCLE_NAMES, PARASPINAL_NAMES
from ParaspinalSegLib import fat_patterns

PATTERNS = fat_patterns.PATTERNS  # diffuse, streaky, patchy, peripheral, confluent
SEXES = ("female", "male")
MAX_FAT_FRACTION = 0.70

# Default fat fraction (signal fraction F/(F+W)) per muscle group and level: rises caudally, as in
# older adults (highest at L5); multifidus fattier than erector spinae, psoas leanest.
DEFAULT_FF: dict[str, dict[str, float]] = {
    "multifidus": {"L1": 0.10, "L2": 0.11, "L3": 0.13, "L4": 0.16, "L5": 0.20},
    "erector_spinae": {"L1": 0.09, "L2": 0.10, "L3": 0.11, "L4": 0.13, "L5": 0.16},
    "psoas": {"L1": 0.05, "L2": 0.05, "L3": 0.06, "L4": 0.06, "L5": 0.07},
    "quadratus_lumborum": {"L1": 0.08, "L2": 0.08, "L3": 0.09, "L4": 0.10, "L5": 0.11},
}
DEFAULT_PATTERN = {
    "multifidus": "streaky",
    "erector_spinae": "diffuse",
    "psoas": "diffuse",
    "quadratus_lumborum": "patchy",
}

LevelValue = float | dict[str, float]
PRESET_DIR = Path(__file__).resolve().parent / "presets"
GOUTALLIER_GRADES = (0, 1, 2, 3, 4)
PARASPINALS = PARASPINAL_NAMES


@dataclass
class MuscleParams:
    """Per-muscle parameters: fat fraction and atrophy (scalar or per-level map), fat pattern."""

    fat_fraction: LevelValue | None = None  # None = the group's default per-level FF
    atrophy: LevelValue = 1.0
    csa_cm2: LevelValue | None = None  # absolute CSA before atrophy/asymmetry (None = sex/body default)
    pattern: str | None = None  # None = the group's default pattern

    def to_dict(self) -> dict[str, Any]:
        """Plain-YAML form (explicit values only)."""
        out: dict[str, Any] = {"atrophy": self.atrophy}
        if self.fat_fraction is not None:
            out["fat_fraction"] = self.fat_fraction
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


@dataclass
class PhantomParams:
    """Full parameter set of one phantom case; see docs/phantom.md for meaning and units."""

    levels: list[str] = field(default_factory=lambda: list(LEVELS))
    sex: str = "female"
    body_scale: float = 1.0
    snr: float = 40.0
    bias_strength: float = 0.2
    spacing_mm: list[float] = field(default_factory=lambda: [1.0, 1.0])
    slice_thickness_mm: float = 4.0
    slice_gap_mm: float = 0.0
    matrix: list[int] = field(default_factory=lambda: [320, 320])
    slices_per_level: int = 6
    muscles: dict[str, MuscleParams] = field(default_factory=dict)
    asymmetry: float = 0.0
    discs: bool = True
    subcutaneous_fat_mm: float | None = None  # None = sex default (female 16, male 12)
    seed_jitter_mm: float = 0.0  # SD of the random in-plane offset of the seed points

    def __post_init__(self) -> None:
        """Accept plain mappings for muscles (``PhantomParams(muscles={"psoas_left": {"atrophy": 0.8}})``)."""
        for name, mp in list(self.muscles.items()):
            if name not in MUSCLE_NAMES:
                raise MissingKeyError(
                    f"unknown muscle {name!r} under 'muscles'; expected one of {', '.join(MUSCLE_NAMES)}"
                )
            if isinstance(mp, dict):
                unknown = set(mp) - set(MuscleParams.__dataclass_fields__)
                if unknown:
                    raise MissingKeyError(f"unknown key {sorted(unknown)[0]!r} under muscles.{name}")
                self.muscles[name] = MuscleParams(**mp)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "parameters") -> PhantomParams:
        """Build from a plain mapping (YAML content); unknown keys raise KeyError naming the key."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known:
                raise MissingKeyError(
                    f"{source}: unknown phantom parameter {key!r}; expected one of {', '.join(sorted(known))}"
                )
        muscles_raw = data.pop("muscles", None) or {}
        if not isinstance(muscles_raw, dict):
            raise BadInputError(f"{source}: 'muscles' must be a mapping of muscle name -> settings")
        muscles: dict[str, MuscleParams] = {}
        for name, settings in muscles_raw.items():
            if name not in MUSCLE_NAMES:
                raise MissingKeyError(
                    f"{source}: unknown muscle {name!r} under 'muscles'; expected one of {', '.join(MUSCLE_NAMES)}"
                )
            settings = settings or {}
            if not isinstance(settings, dict):
                raise BadInputError(f"{source}: muscles.{name} must be a mapping")
            for key in settings:
                if key not in MuscleParams.__dataclass_fields__:
                    raise MissingKeyError(
                        f"{source}: unknown key {key!r} under muscles.{name}; expected fat_fraction, atrophy, pattern, csa_cm2"
                    )
            muscles[name] = MuscleParams(**settings)
        params = cls(**data, muscles=muscles)
        params.validate(source)
        return params

    @classmethod
    def from_yaml(cls, path: str | Path) -> PhantomParams:
        """Read a parameter YAML file (all keys optional)."""
        path = Path(path)
        if not path.exists():
            raise MissingInputError(f"phantom parameter file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise BadInputError(f"{path}: not valid YAML: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise BadInputError(f"{path}: top level must be a mapping of parameter -> value")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Complete, re-runnable plain mapping (every muscle written out with its resolved values)."""
        return {
            "levels": list(self.levels),
            "sex": self.sex,
            "body_scale": float(self.body_scale),
            "snr": float(self.snr),
            "bias_strength": float(self.bias_strength),
            "spacing_mm": [float(v) for v in self.spacing_mm],
            "slice_thickness_mm": float(self.slice_thickness_mm),
            "slice_gap_mm": float(self.slice_gap_mm),
            "matrix": [int(v) for v in self.matrix],
            "slices_per_level": int(self.slices_per_level),
            "asymmetry": float(self.asymmetry),
            "discs": bool(self.discs),
            "seed_jitter_mm": float(self.seed_jitter_mm),
            "subcutaneous_fat_mm": float(self.subcutaneous_fat()),
            "muscles": {
                name: {
                    "fat_fraction": {lv: round(self.fat_fraction(name, lv), 6) for lv in self.levels},
                    "atrophy": {lv: round(self.atrophy(name, lv), 6) for lv in self.levels},
                    **self._csa_dict(name),
                    "pattern": self.pattern(name),
                }
                for name in MUSCLE_NAMES
            },
        }

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of :meth:`to_dict`; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # ---- resolved per-muscle values ------------------------------------------------------------
    def subcutaneous_fat(self) -> float:
        """Subcutaneous fat thickness in mm (before body_scale)."""
        if self.subcutaneous_fat_mm is not None:
            return float(self.subcutaneous_fat_mm)
        return 16.0 if self.sex == "female" else 12.0

    def _muscle(self, name: str) -> MuscleParams:
        return self.muscles.get(name) or MuscleParams()

    @staticmethod
    def _level_value(value: LevelValue, level: str) -> float:
        if isinstance(value, dict):
            return float(value.get(level, 1.0 if not value else _fallback(value, level)))
        return float(value)

    def fat_fraction(self, name: str, level: str) -> float:
        """Requested muscle fat fraction (0–0.7) of ``name`` at ``level``."""
        group = name.rsplit("_", 1)[0]
        ff = self._muscle(name).fat_fraction
        if ff is None:
            return DEFAULT_FF[group][level]
        if isinstance(ff, dict) and level not in ff:
            return DEFAULT_FF[group][level]
        return self._level_value(ff, level)

    def csa_cm2(self, name: str, level: str) -> float | None:
        """Absolute requested CSA (cm², before atrophy and asymmetry) or None for the default anatomy."""
        value = self._muscle(name).csa_cm2
        if value is None or (isinstance(value, dict) and level not in value):
            return None
        return self._level_value(value, level)

    def _csa_dict(self, name: str) -> dict[str, Any]:
        given = {lv: self.csa_cm2(name, lv) for lv in self.levels}
        given = {lv: round(v, 6) for lv, v in given.items() if v is not None}
        return {"csa_cm2": given} if given else {}

    def atrophy(self, name: str, level: str) -> float:
        """CSA scale factor of ``name`` at ``level`` (1 = normal)."""
        value = self._muscle(name).atrophy
        if isinstance(value, dict) and level not in value:
            return 1.0
        return self._level_value(value, level)

    def pattern(self, name: str) -> str:
        """Fat pattern of ``name``: diffuse, streaky, patchy, peripheral or confluent."""
        pattern = self._muscle(name).pattern
        return pattern if pattern is not None else DEFAULT_PATTERN[name.rsplit("_", 1)[0]]

    # ---- validation ------------------------------------------------------------------------------
    def validate(self, source: str = "parameters") -> None:
        """Raise ValueError naming the bad key and value."""

        def bad(key: str, value: Any, why: str) -> BadInputError:
            return BadInputError(f"{source}: {key}={value!r}: {why}")

        if not isinstance(self.levels, list | tuple) or not self.levels:
            raise bad("levels", self.levels, "must be a non-empty list such as [L1, L2, L3, L4, L5]")
        for lv in self.levels:
            if lv not in LEVELS:
                raise bad("levels", lv, f"unknown level; expected among {', '.join(LEVELS)}")
        idx = [LEVELS.index(lv) for lv in self.levels]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise bad(
                "levels", self.levels, "must be consecutive and in cranio-caudal order (e.g. [L3, L4, L5])"
            )
        if self.sex not in SEXES:
            raise bad("sex", self.sex, "must be female or male")
        _num(self.body_scale, 0.7, 1.3, "body_scale", bad)
        _num(self.snr, 1.0, 10000.0, "snr", bad)
        _num(self.bias_strength, 0.0, 0.6, "bias_strength", bad)
        _num(self.asymmetry, -0.8, 0.8, "asymmetry", bad)
        _num(self.slice_thickness_mm, 0.5, 10.0, "slice_thickness_mm", bad)
        _num(self.slice_gap_mm, 0.0, 10.0, "slice_gap_mm", bad)
        _num(self.seed_jitter_mm, 0.0, 20.0, "seed_jitter_mm", bad)
        if self.subcutaneous_fat_mm is not None:
            _num(self.subcutaneous_fat_mm, 3.0, 60.0, "subcutaneous_fat_mm", bad)
        if not isinstance(self.discs, bool):
            raise bad("discs", self.discs, "must be true or false")
        if not isinstance(self.spacing_mm, list | tuple) or len(self.spacing_mm) != 2:
            raise bad("spacing_mm", self.spacing_mm, "must be two numbers [x, y] in mm")
        for v in self.spacing_mm:
            _num(v, 0.3, 3.0, "spacing_mm", bad)
        if not isinstance(self.matrix, list | tuple) or len(self.matrix) != 2:
            raise bad("matrix", self.matrix, "must be two integers [columns, rows]")
        for v in self.matrix:
            if not isinstance(v, int) or isinstance(v, bool) or not 32 <= v <= 1024:
                raise bad("matrix", v, "must be an integer in 32..1024")
        if not isinstance(self.slices_per_level, int) or not 1 <= self.slices_per_level <= 40:
            raise bad("slices_per_level", self.slices_per_level, "must be an integer in 1..40")
        for name, mp in self.muscles.items():
            if mp.pattern is not None and mp.pattern not in PATTERNS:
                raise bad(f"muscles.{name}.pattern", mp.pattern, f"must be one of {', '.join(PATTERNS)}")
            for key, lo, hi in (
                ("fat_fraction", 0.0, MAX_FAT_FRACTION),
                ("atrophy", 0.2, 2.0),
                ("csa_cm2", 0.5, 80.0),
            ):
                value = getattr(mp, key)
                if value is None:
                    continue
                items = value.items() if isinstance(value, dict) else [(None, value)]
                for lv, v in items:
                    label = f"muscles.{name}.{key}" + (f".{lv}" if lv is not None else "")
                    if lv is not None and lv not in LEVELS:
                        raise bad(label, lv, f"unknown level; expected among {', '.join(LEVELS)}")
                    _num(v, lo, hi, label, bad)


def preset_names() -> list[str]:
    """Names of the shipped parameter presets (``presets/phantom_<name>.yaml``)."""
    return sorted(p.stem.removeprefix("phantom_") for p in PRESET_DIR.glob("phantom_*.yaml"))


def preset(name: str) -> PhantomParams:
    """A shipped preset by name: ``default`` or ``goutallier_0`` … ``goutallier_4``."""
    path = PRESET_DIR / f"phantom_{name}.yaml"
    if not path.is_file():
        raise MissingKeyError(f"unknown phantom preset {name!r}; expected one of {', '.join(preset_names())}")
    return PhantomParams.from_yaml(path)


def goutallier_params(grade: int, pattern: str | None = None, **overrides: Any) -> PhantomParams:
    """Parameters of the Goutallier ``grade`` preset (0–4) with the paraspinal muscles' fat ``pattern`` replaced
    (None keeps the preset's) and top-level keys overridden (e.g. ``matrix=[192, 192]``, ``levels=[...]``)."""
    if grade not in GOUTALLIER_GRADES:
        raise BadInputError(f"Goutallier grade {grade!r}: expected one of {GOUTALLIER_GRADES}")
    data = preset(f"goutallier_{grade}").to_dict()
    if pattern is not None:
        for name in PARASPINALS:
            data["muscles"][name]["pattern"] = pattern
    levels = overrides.get("levels")
    if levels is not None:  # per-level maps keep only the chosen levels
        for settings in data["muscles"].values():
            for key in ("fat_fraction", "atrophy"):
                settings[key] = {lv: v for lv, v in settings[key].items() if lv in levels}
    data.update(overrides)
    return PhantomParams.from_dict(data, source=f"goutallier_{grade} preset")


def _fallback(value: dict[str, float], level: str) -> float:
    """Value of a partial per-level map at a level it does not list: the nearest listed level."""
    listed = sorted(value, key=lambda lv: abs(LEVELS.index(lv) - LEVELS.index(level)))
    return float(value[listed[0]])


def _num(value: Any, lo: float, hi: float, key: str, bad: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(key, value, "must be a number")
    if not lo <= float(value) <= hi:
        raise bad(key, value, f"must be in [{lo}, {hi}]")
