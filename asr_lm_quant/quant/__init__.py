"""Quantizers, the quantization plan, PTQ / STE / ADMM training, Hessian traces, bit allocation, search, packed files."""
