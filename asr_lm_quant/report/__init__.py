"""Results tables and plots from the JSON files that recipe stages leave (``asr-lm-quant report``)."""
