"""Fraud rings: entity resolution (``resolve``), the incremental claim graph
(``graph``), telematics verification (``verify``), features and the XGBoost
classifier (``features``, ``model``, ``evaluate``), the live ``engine`` and the
``voltrisk fraud`` CLI. See docs/fraud.md."""
