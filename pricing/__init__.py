"""voltrisk pricing: frequency–severity models, telematics multiplier, rating and registry.

- ``fremtpl2``: the freMTPL2 reference data with the published preprocessing and splits;
- ``metrics``: Poisson deviance ×100, exposure-weighted Gini, calibration by decile;
- ``scorers``: homogeneous, Poisson GLM and XGBoost (Poisson / gamma) behind one contract;
- ``telematics``: the bounded telematics multiplier on the 30-day driving features;
- ``rating``: quotes (base × multiplier) with reason codes, and the stream scorer;
- ``registry``: versioned artefacts, promotion and hot reload;
- ``benchmark`` and ``cli``: ``voltrisk pricing benchmark | train | telematics | promote | models``.

See ``docs/pricing.md``.
"""
