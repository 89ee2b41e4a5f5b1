"""LBPRiskModelLib."""
