"""Back-off n-gram LMs: training ARPA files (kaldingram), perplexity and sentence costs (kenlm)."""
