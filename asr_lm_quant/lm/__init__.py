"""The Transformer LM, its data pipeline, training (single process and DDP), perplexity, model files.

Modules: ``model`` (TransformerLM, LMConfig), ``files`` (save_lm/load_lm model directories), ``data``
(text -> length-bucketed padded batches), ``options`` (TrainOptions, configuration files), ``optim``
(optimizers, the warm-up + cosine schedule), ``loop`` (``fit``, the one training loop of LM training and
quantization fine-tuning; ``train_loop``, ``evaluate``, ``lm_loss``), ``checkpoint`` (the one checkpoint
format: safetensors + JSON), ``train``
(``asr-lm-quant train``), ``ppl`` (perplexity), ``kaldi_import`` (Kaldi pytorchnn models).
"""
