"""The Transformer LM, its data pipeline, training (single process and DDP), perplexity, model files.

Modules: ``model`` (TransformerLM, LMConfig), ``files`` (save_lm/load_lm model directories), ``data``
(text -> length-bucketed padded batches), ``options`` (TrainOptions, configuration files), ``optim``
(optimizers, learning-rate schedules), ``loop`` (the reusable ``train_loop`` with ``extra_loss`` /
``after_step`` hooks, ``evaluate``, ``lm_loss``), ``checkpoint`` (safetensors checkpoints), ``train``
(``asr-lm-quant train``), ``ppl`` (perplexity), ``kaldi_import`` (Kaldi pytorchnn models).
"""
