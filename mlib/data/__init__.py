"""Data: the AFLOW AGL thermal-expansion set and Materials Project sets, live or from a mirror."""
