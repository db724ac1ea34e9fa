"""The Transformer LM, its data pipeline, training (single process and DDP), perplexity, model files."""
