"""WER as Kaldi and NIST compute it: sweeps, best_wer, CTM/STM/GLM, SCTK."""
