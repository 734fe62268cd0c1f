"""Competent baselines and faithful re-implementations of the peers' published algorithms.

Written from the papers and the peers' repositories' semantics (no code copied), used only by the
benchmarks in ``benchmarks/`` and by their agreement tests:

* ``grid_baseline``      -- a competent per-pair NumPy Setting 1 grid (baseline of ``sampling_grid``);
* ``clip_dissect_peer``  -- Trustworthy-ML-Lab/CLIP-dissect ``soft_wpmi`` (per-neuron torch loop);
* ``le_peer``            -- Trustworthy-ML-Lab/Linear-Explanations (GLM-SAGA + Adam greedy search).
"""
