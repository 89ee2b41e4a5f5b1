"""ParaspinalRadiomicsLib."""
