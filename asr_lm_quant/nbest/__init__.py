"""N-best lists of any recogniser: one module per format in ``formats/`` (each with ``detect`` and ``read``),
read through :mod:`asr_lm_quant.nbest.read` (``--nbest-format``)."""
