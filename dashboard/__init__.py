"""voltrisk dashboard."""
