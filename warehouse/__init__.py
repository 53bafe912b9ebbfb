"""voltrisk warehouse."""
