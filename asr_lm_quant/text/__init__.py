"""Corpora -> LM text: Switchboard, Fisher, eval2000, plain corpora, vocabularies."""
