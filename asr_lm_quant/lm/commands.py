"""``asr-lm-quant train``, ``ppl`` and ``import-kaldi``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asr_lm_quant.cli_args import (add_command, add_json_option, add_quiet_option, existing_file, nonneg_float,
                                   nonneg_int, positive_int, write_json_output)
from asr_lm_quant.errors import InputError


def _set_threads(n):
    if n:
        import torch
        torch.set_num_threads(n)


def _parse_overrides(pairs) -> dict:
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise InputError(None, f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def register(sub):
    p = add_command(
        sub, "train", help="train a Transformer LM (resumes automatically; works under torchrun)",
        description="Train a Transformer LM. Re-running the same command resumes from the newest checkpoint in "
                    "--out. Under `torchrun --nproc-per-node N` it trains data-parallel (gloo on CPU, nccl on "
                    "GPU) with the same global batch. Follow it in OUT/log/train.jsonl.",
        example="asr-lm-quant train --config conf/lm.json --train data/lm/train.txt --valid data/lm/valid.txt "
                "--words data/lm/words.txt --out exp/lm")
    p.add_argument("--config", required=True, type=existing_file, help="JSON file: {'model': {...}, 'train': {...}}")
    p.add_argument("--train", required=True, help="training text, one sentence per line")
    p.add_argument("--valid", help="validation text (for early stopping and the best model)")
    p.add_argument("--words", dest="vocab", metavar="WORDS_TXT", required=True, help="words.txt with <s> and <unk>")
    p.alias("--vocab", "--words")
    p.add_argument("--out", required=True, help="output directory (model, checkpoints/, log/, results.json)")
    p.add_argument("--seed", type=int, help="overrides the configuration's seed")
    p.add_argument("--max-epochs", type=positive_int, help="overrides the configuration's max_epochs")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (overrides the configuration)")
    p.add_argument("--self-norm-alpha", type=nonneg_float, metavar="A",
                   help="add A * mean((log Z)^2) to the loss so that the model's probabilities sum to about 1 "
                        "without normalising (overrides the configuration's self_norm_alpha, 0 unless set)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training option, e.g. --set lr=0.002 (repeatable)")
    p.add_argument("--init-model", metavar="LM_DIR",
                   help="model directory to start from (same vocabulary and architecture)")
    p.add_argument("--max-steps-this-run", type=nonneg_int, default=0,
                   help="stop (with a checkpoint) after this many steps, 0 for no limit; re-run to continue")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch CPU threads (0: torch's choice)")
    add_quiet_option(p)
    p.set_defaults(func=_train)

    p = add_command(
        sub, "ppl", help="perplexity of an LM on a text file",
        description="Perplexity with and without end-of-sentence (<s> ends each sentence), OOV words scored as "
                    "<unk> and counted. The model may be plain or packed (quantized). Prints JSON.",
        example="asr-lm-quant ppl --lm-dir exp/lm --text data/lm/test.txt --json exp/lm/ppl_test.json")
    p.add_argument("--lm-dir", dest="model", metavar="LM_DIR", required=True, help="model directory (plain or packed)")
    p.alias("--model", "--lm-dir")
    p.add_argument("--text", required=True, help="text, one sentence per line")
    add_json_option(p, "the result (it is always printed)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--tokens-per-batch", type=positive_int, default=8192,
                   help="model positions per batch, padding included")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch CPU threads (0: torch's choice)")
    add_self_norm_options(p)
    add_quiet_option(p)
    p.set_defaults(func=_ppl)

    p = add_command(
        sub, "import-kaldi", help="import a Kaldi pytorchnn Transformer or LSTM LM (model.pt + words.txt)",
        description="Convert Kaldi's steps/pytorchnn Transformer or LSTM (a torch.save'd state_dict, read with "
                    "weights_only=True) into a model directory. Sizes come from the tensors; for a Transformer "
                    "give --nhead and --activation as the model was trained.",
        example="asr-lm-quant import-kaldi --model-pt exp/pytorchnn/model.pt --words data/pytorchnn/words.txt "
                "--out exp/lm_kaldi")
    p.add_argument("--model-pt", required=True, type=existing_file, help="Kaldi model.pt (state_dict)")
    p.add_argument("--words", required=True, help="the words.txt the model was trained with (line order = index)")
    p.add_argument("--out", required=True, help="output model directory")
    # Not a model directory: the architecture, named as Kaldi's train.py --model names it.
    p.add_argument("--model", choices=("Transformer", "LSTM"), default="Transformer",
                   help="the model type it was trained as (Kaldi's train.py --model)")
    p.add_argument("--nhead", type=positive_int, default=8,
                   help="attention heads (Kaldi recipe: 8; Transformer only)")
    p.add_argument("--activation", choices=("gelu", "relu"), default="gelu",
                   help="feed-forward activation (Kaldi's TransformerModel uses gelu; Transformer only)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.set_defaults(func=_import_kaldi)


def add_self_norm_options(p):
    p.add_argument("--self-normalized", action="store_true",
                   help="skip the softmax normaliser: a word's cost is minus its logit (only the scored words' "
                        "rows of the output matrix are used); for models trained with --self-norm-alpha")
    p.add_argument("--force-self-normalized", action="store_true",
                   help="--self-normalized even for a model whose config.json declares no self-normalisation")


def self_normalized(args) -> bool:
    """Whether the command skips the normaliser; refused for a model not trained for it unless forced."""
    if not (args.self_normalized or args.force_self_normalized):
        return False
    from asr_lm_quant.lm.files import check_self_normalized
    check_self_normalized(getattr(args, "model", None) or args.lm_dir, force=args.force_self_normalized)
    return True


def _train(args):
    from asr_lm_quant.lm.train import train
    _set_threads(args.threads)
    overrides = _parse_overrides(args.set)
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.bf16:
        overrides["bf16"] = True
    if args.self_norm_alpha is not None:
        overrides["self_norm_alpha"] = args.self_norm_alpha
    r = train(args.config, args.train, args.valid, args.vocab, args.out, seed=args.seed, overrides=overrides,
              max_steps_this_run=args.max_steps_this_run, init_model=args.init_model)
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_rank() == 0:
        json.dump(r, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if dist.is_initialized():
        dist.destroy_process_group()


def _load_model(path, device):
    """A plain model directory, or a packed (quantized) one kept packed in memory."""
    from asr_lm_quant.quant.packed import load_lm_for_inference
    return load_lm_for_inference(path, device)


def _ppl(args):
    from asr_lm_quant.lm.device import checked_device
    from asr_lm_quant.lm.ppl import perplexity
    checked_device(args.device)
    skip_normaliser = self_normalized(args)
    _set_threads(args.threads)
    model, vocab = _load_model(args.model, args.device)
    r = perplexity(model, vocab, args.text, device=args.device, tokens_per_batch=args.tokens_per_batch,
                   bf16=args.bf16, self_normalized=skip_normaliser)
    r.update(model=str(args.model), text=str(args.text))
    json.dump(r, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if args.json and args.json != "-":  # the result is on stdout already
        write_json_output(args.json, r)


def _import_kaldi(args):
    from asr_lm_quant.lm.files import CONFIG, WEIGHTS, save_lm
    from asr_lm_quant.lm.kaldi_import import import_kaldi
    out = Path(args.out)
    if not args.overwrite and ((out / WEIGHTS).exists() or (out / CONFIG).exists()):
        raise InputError(out, "already holds a model (use --overwrite to replace it)")
    model, vocab = import_kaldi(args.model_pt, args.words, model_type=args.model, n_heads=args.nhead,
                                activation=args.activation)
    save_lm(out, model, vocab, extra={"imported_from": {"model_pt": str(args.model_pt), "words": str(args.words),
                                                        "format": "kaldi-pytorchnn", "model": args.model}})
    print(json.dumps({"out": str(out), "model": model.cfg.to_dict(), "parameters": model.num_parameters()}, indent=2))
