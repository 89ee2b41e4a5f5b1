"""Plain-Python code shared by every ParaspinalLBP Lib (no Slicer, Qt or VTK imports)."""
