"""Hypothesis costs (n-gram and NN LM) and n-best / lattice rescoring."""
