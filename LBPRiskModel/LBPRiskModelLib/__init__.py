"""LBPRiskModelLib: the METNLBP response/recurrence prediction-model pipeline and its model bundle.

Modules:
- ``dataset`` — assemble C5 features (``<feature>__<structure>__<level>``), C4 measurements and C6
  clinical data by case id; outcomes ``responder_<visit>`` (ODI improvement ≥ MCID) and
  ``recurrence_<N>m``; data report (missingness, class balance, events per variable).
- ``preprocess`` — ComBat-style harmonisation, imputation/scaling/one-hot, LASSO stability selection
  (all sklearn transformers, fitted inside training folds only).
- ``train`` / ``export`` — stratified 7:3 split, k-fold CV tuning of LR/RF/XGBoost/LightGBM/MLP,
  one test-set evaluation, Harrell optimism bootstrap, bundle export.
- ``stats`` — fast DeLong, bootstrap CIs, threshold metrics, calibration, decision curves.
- ``bundle`` — ``save_bundle`` / ``load_bundle`` → ``Bundle`` (``schema``, ``validate``,
  ``predict_one``, ``predict``, ``metadata``, ``model_card_path``); verified SHA-256 manifest,
  skops with an explicit trust list. Used by the calculator (``webapp``) and the Slicer Logic.
- ``explain`` / ``treeshap`` — prediction-time contributions without the ``shap`` package
  (Slicer-safe): linear SHAP, exact path-dependent TreeSHAP vectorised over root-to-leaf paths,
  permutation Shapley for the MLP.
- ``fastpath`` — numpy one-row prediction path of a bundle, used only when it equals scikit-learn's
  on probe rows at load time.
- ``labels`` — bilingual (English / Chinese) labels, units and plausible ranges of input fields.
- ``webapp`` — the web calculator (FastAPI): form and result pages, JSON API, model card.
- ``figures`` / ``reporting`` — ROC, calibration, decision curve, SHAP/LIME plots, HTML report,
  model card, TRIPOD+AI checklist.

CLI: ``python -m LBPRiskModelLib train|predict|report|serve``.
"""
