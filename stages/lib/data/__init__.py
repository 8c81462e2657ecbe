"""The corpus schema, text normalisation, cross-validation splitters and the fold files on disk."""
