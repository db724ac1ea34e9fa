"""Kaldi formats: symbol tables, data dirs, the lattice type and its algorithms, lattice archives, n-best tables."""
