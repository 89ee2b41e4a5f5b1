"""ParaspinalRadiomicsLib: radiomic features of paraspinal muscles with pyradiomics as the engine.

Entry points
- ``extraction.extract_case(image, labels, label_names, params, levels=None, per_level=False,
  per_side=True, case_id=..., progress=None, resample_mask=False, structures=None) -> DataFrame``:
  every structure (x level slab) of one case, image preprocessed once, values bit-identical to
  ``RadiomicsFeatureExtractor(params).execute(image, mask, label=v)``.
- ``batch.Batch(manifest, params, out, ...).run(jobs=N | scheduler=ADDRESS)``: resumable cohort batch.
- ``reproducibility.icc(table_a, table_b, ...)``, ``perturbation_features`` / ``perturbation_icc``,
  ``robust_features`` -> ``robust_features.json``.
- presets (``presets/*.yaml``, pyradiomics parameter files): ``protocol-mri``, ``ibsi-like``.
- CLI: ``python -m ParaspinalRadiomicsLib {extract,batch,icc,perturb} --help``.

Feature table (contract C5, ``features.csv``): one row per case x structure x level ("all" or L1..L5);
columns case_id, structure, level, n_voxels, status ("ok" | "error"), reason, settings_hash,
pyradiomics_version, then pyradiomics' feature names. ``features.csv.json`` beside it holds the
provenance (versions of pyradiomics/numpy/SimpleITK/PyWavelets, full settings, enabled classes).
Image NaN/inf voxels are an error (features are undefined on them); masks that pyradiomics rejects
(empty, one voxel, too small, 1-D) give NaN features with the reason.
"""
