"""asr-lm-quant: quantized Transformer language models for rescoring Kaldi ASR output."""

__version__ = "0.1.0"
