"""ParaspinalLBPCore: plain-Python code shared by every ParaspinalLBP Lib (one home, no copies).

Rules: the core never imports slicer/qt/ctk/vtk, ``ParaspinalLBPSlicer`` or any ``<M>Lib``; every Lib may
import it (a Lib never imports another Lib). Importing this package loads nothing; import the modules.

API (stable; other modules build on it):

- ``errors``: ``UserError`` (bad input the user can fix: the command lines print its message and exit
  2; anything else is a bug and shows its traceback), ``BadInputError(UserError, ValueError)``,
  ``MissingInputError(UserError, FileNotFoundError)``.
- ``cli``: ``run_cli(prog, description, commands, argv)`` with ``commands = {name: Command(
  "pkg.module:add_cli", "one-line help")}``; only the chosen sub-command's module is imported, so
  ``--help`` loads no engine. ``add_cli(subparsers, name)`` adds the parser and ``set_defaults(func=run)``.
- ``structures``: the vocabulary. ``MUSCLES`` / ``ALL_STRUCTURES`` (``Structure``: name, label value,
  colour, muscle group, side, SNOMED terminology), ``BY_NAME``, ``BY_VALUE``, ``MUSCLE_NAMES``,
  ``PARASPINAL_NAMES``, ``MUSCLE_GROUPS``, ``PARASPINAL_GROUPS``, ``SIDES``, ``LEVELS`` (L1–L5),
  ``LEVEL_CODES`` / ``MUSCLE_CODES`` (SNOMED CT), ``muscle_name(group, side)``, ``structure(name)``,
  ``canonical_name(segment_name)``, ``default_label_names()``, label names of the shared real data sets
  (``TUM01_LABEL_NAMES``, ``MUSCLEMAP_LABEL_NAMES``).
- ``atomic``: ``atomic_write_text``, ``atomic_write_bytes``, ``atomic_path`` (a temporary name for any
  writer), ``atomic_dir`` (a whole folder): temp sibling + ``os.replace``.
- ``staging``: crash-safe publication of a set of outputs — ``staged_files(folder)`` (files joining a
  folder), ``staged_dir(path)`` (a folder swapped whole): staged in an owner-named hidden folder,
  committed, moved by renames; ``recover(folder, dead_group=None)`` finishes or removes what a killed
  writer left (every writer calls it first; ``ParaspinalLBPSlicer.jobs`` after a job's processes are gone).
- ``agreement``: ``icc_from_matrix(y, alpha)``: ICC(1,1)/(2,1)/(3,1) with confidence intervals
  (Shrout & Fleiss 1979, McGraw & Wong 1996; validated on the published numbers), ``ICC_FORMS``.
- ``dicom_series`` / ``dicom_write``: DICOM series input (scan, choose, read, Dixon pairs) and MR series
  writing.
"""
