"""First-pass decoding outside Kaldi: pocketsphinx lattices turned into Kaldi decode directories.

``pslattice`` reads pocketsphinx's own lattice files; ``expand`` rebuilds them as Kaldi CompactLattices
whose graph costs are an n-gram LM's costs (states split by LM history); ``pocketsphinx`` runs the
recogniser over a ``wav.scp``.
"""
