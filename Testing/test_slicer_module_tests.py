"""Run every module's ``<M>Test`` (the self-test Slicer runs on "Reload and Test") headless."""

from __future__ import annotations

import unittest

import pytest
import slicer_harness

pytestmark = pytest.mark.slicer


@pytest.mark.parametrize("module_name", slicer_harness.MODULES)
def test_module_self_test(module_name: str) -> None:
    """The module imports under the harness and its Test class passes against real MRML."""
    module = slicer_harness.import_module_file(module_name)
    test_class = getattr(module, f"{module_name}Test")
    suite = unittest.TestLoader().loadTestsFromTestCase(test_class)
    assert suite.countTestCases() > 0, f"{module_name}Test has no test methods"
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    problems = [f"{t}: {tb}" for t, tb in result.failures + result.errors]
    assert result.wasSuccessful(), "\n".join(problems)
