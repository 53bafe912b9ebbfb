"""Stream processing: topic contracts, ingest gate, features and Faust agents."""
