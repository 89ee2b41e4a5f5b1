"""The shared MRML conversions (ParaspinalLBPSlicer) through real slicer-core nodes: markups ⇄ LPS points, names."""

from __future__ import annotations

import numpy as np
import pytest

from ParaspinalLBPCore import structures
from ParaspinalSegLib.markups import MarkupPoint

pytestmark = pytest.mark.slicer


def test_points_markups_round_trip(slicer_scene) -> None:
    """pointsToMarkups writes RAS control points with labels and descriptions; markupsToPoints reads the
    same LPS positions back (seeds proposed by the Lib become a node the user can drag)."""
    from ParaspinalLBPSlicer import mrml

    points = [
        MarkupPoint("multifidus_left", np.array([12.5, -40.25, 101.0]), "L4"),
        MarkupPoint("psoas_right", np.array([-55.0, 20.0, 64.5]), "L3"),
    ]
    node = mrml.pointsToMarkups(points, name="proposed")
    assert node.GetNumberOfControlPoints() == 2
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(0, ras)
    np.testing.assert_allclose(ras, [-12.5, 40.25, 101.0])  # LPS → RAS flips x and y
    back = mrml.markupsToPoints(node)
    assert [(p.label, p.description) for p in back] == [(p.label, p.description) for p in points]
    for a, b in zip(back, points, strict=True):
        np.testing.assert_allclose(a.position_lps, b.position_lps, atol=1e-9)
    # Re-using the node replaces its points (a second proposal does not pile up on the first).
    mrml.pointsToMarkups(points[:1], node)
    assert node.GetNumberOfControlPoints() == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Multifidus left", "multifidus_left"),
        ("multifidus_left", "multifidus_left"),
        ("Erector-Spinae (R)", "erector_spinae_right"),
        ("  psoas   LEFT ", "psoas_left"),
        ("Segment_1", "Segment_1"),  # unknown names are kept, not guessed
    ],
)
def test_canonical_name(given: str, expected: str) -> None:
    assert structures.canonical_name(given) == expected
