"""De novo molecule generation from spectra and GLMR generative re-ranking.

* :mod:`msid.generation.tokenizer`: SMILES (or SELFIES) tokens, vocabulary saved as JSON;
* :mod:`msid.generation.model`: spectrum-conditioned SMILES decoder (the shared spectral
  encoder of :mod:`msid.models.encoder` conditions it) and GLMR's candidate fusion;
* :mod:`msid.generation.beam`: beam search returning distinct, valid, canonical molecules,
  with the precursor formula/mass filter;
* :mod:`msid.generation.training`: decoder pretraining on pool molecules (val/test structures
  left out), spectrum-conditioned training, GLMR training;
* :mod:`msid.generation.methods`: the ``denovo`` and ``glmr`` identification methods;
* :mod:`msid.generation.benchmark`: de novo metrics, random-generation baseline, GLMR rows.
"""
