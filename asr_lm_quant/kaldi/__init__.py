"""Kaldi formats: symbol tables, data dirs, the lattice type and its algorithms, lattice archives, n-best tables.

Main entry points (see each module's docstring):

* ``lattice.Lattice``: our lattice type (CompactLattice and Lattice in numpy arrays).
* ``archive.read_lattices(rspec)`` / ``archive.LatticeWriter(wspec)``: streaming table I/O.
* ``algorithms``: top-sort, best path, forward-backward posteriors, pruning, scaling, frame times.
* ``nbest``: N-best paths and Kaldi's n-best text tables; ``symbols``: words.txt; ``datadir``: data dirs.
"""

from asr_lm_quant.kaldi.archive import (LatticeWriter, decode_dir_jobs, read_decode_dir, read_lattices,
                                        write_lattices)
from asr_lm_quant.kaldi.algorithms import lattice_to_compact
from asr_lm_quant.kaldi.lattice import Lattice, compact_to_lattice, linear_lattice

__all__ = ["Lattice", "LatticeWriter", "read_lattices", "write_lattices", "read_decode_dir", "decode_dir_jobs",
           "compact_to_lattice", "lattice_to_compact", "linear_lattice"]
