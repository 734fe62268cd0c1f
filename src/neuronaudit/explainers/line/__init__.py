"""LINE (SPEC sec. 6; seed 000): an iterative, black-box neuron labeller. A proposer suggests a concept
from the history of (concept, score); a generator makes images of it; the score compares the neuron's
activations on them with control images; the best concept after the iterations and a summary step is
the explanation. docs/line.md.

Modules: :mod:`.scores` (AUC, MAD, mean activation), :mod:`.history` (the history, its record and
replay), :mod:`.proposers` (offline embedding-space proposer; transformers chat LLM),
:mod:`.generators` (offline retrieval; diffusers), :mod:`.targets` (the target model on generated
images), :mod:`.loop` (one neuron), :mod:`.stage` (a layer's shard with per-neuron checkpoints, the
gather), :mod:`.polysemanticity`.

This package module stays light (no torch): the explainer registry imports :mod:`.settings` only.
"""
