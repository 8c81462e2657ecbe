"""Configuration, errors, atomic writes, run provenance and the paths every stage reads or writes."""
