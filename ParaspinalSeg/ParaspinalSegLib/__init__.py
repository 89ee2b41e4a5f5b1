"""ParaspinalSegLib."""
