"""TrialAnalysisLib."""
