"""ParaspinalLBPCore.structures: the vocabulary is consistent with itself (names = group_side, unique label
values, codes for every group and level)."""

from __future__ import annotations

import pytest

from ParaspinalLBPCore import structures as st


def test_names_values_groups_sides_levels_agree() -> None:
    assert [s.name for s in st.MUSCLES] == [st.muscle_name(s.muscle, s.side) for s in st.MUSCLES]
    assert {s.muscle for s in st.MUSCLES} == set(st.MUSCLE_GROUPS) == set(st.MUSCLE_CODES)
    assert {s.side for s in st.MUSCLES} == set(st.SIDES)
    assert [s.value for s in st.MUSCLES] == list(range(1, 9))
    assert len(st.BY_VALUE) == len(st.ALL_STRUCTURES) == len(st.BY_NAME)
    assert st.MUSCLE_NAMES[:4] == st.PARASPINAL_NAMES and set(st.PARASPINAL_GROUPS) <= set(st.MUSCLE_GROUPS)
    assert tuple(st.LEVEL_CODES) == st.LEVELS == ("L1", "L2", "L3", "L4", "L5")
    for names in (st.TUM01_LABEL_NAMES, st.MUSCLEMAP_LABEL_NAMES):
        assert set(names.values()) <= set(st.MUSCLE_NAMES)
    assert st.canonical_name("Multifidus (L)") == "multifidus_left" and st.canonical_name("x") == "x"
    with pytest.raises(KeyError, match="unknown muscle"):
        st.muscle_name("multifidus", "middle")
