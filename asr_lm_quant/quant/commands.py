"""CLI: ``quantize``, ``quant-inspect``, ``quant-sweep``."""

from __future__ import annotations

import json

from asr_lm_quant.errors import InputError
from asr_lm_quant.cli_args import (add_command, add_json_option, add_quiet_option, existing_file, int_list,
                                   positional_fallback, positive_int, split_list, write_json_output)
from asr_lm_quant.quant.methods import (add_method_flags, all_methods, config_from_args, methods_help, mixed_methods,
                                       plan_trainers)
from asr_lm_quant.quant.options import FinetuneOptions


def register(sub):
    _register_quantize(sub)
    _register_inspect(sub)
    _register_sweep(sub)


def _register_quantize(sub):
    p = add_command(
        sub, "quantize", help="quantize an LM (PTQ, STE-QAT, ADMM; Hessian, KL or search mixed precision)",
        description="Quantize a model directory and write a packed model directory with quant_config.json, "
                    "plan.json and results.json. Fine-tuning checkpoints go to OUT/checkpoints/; after an "
                    "interruption the same command resumes. Under `torchrun --nproc-per-node N` it fine-tunes "
                    "data-parallel (gloo on CPU, nccl on GPU) with the same global batch. The older form "
                    "`quantize LM_DIR OUT ...` is accepted too.",
        example=["asr-lm-quant quantize --lm-dir exp/lm --out exp/lm_ptq4 --method ptq --bits 4 "
                 "--valid data/lm/valid.txt",
                 "asr-lm-quant quantize --lm-dir exp/lm --out exp/lm_hessian8x --method hessian --compression 8 "
                 "--train data/lm/train.txt --valid data/lm/valid.txt"])
    p.add_argument("--lm-dir", dest="model", metavar="LM_DIR", help="input model directory (plain or packed)")
    p.alias("--model", "--lm-dir")
    p.add_argument("--out", help="output directory (packed model)")
    positional_fallback(p, "--lm-dir", "--out")
    p.add_argument("--method", choices=list(all_methods()), required=True, help=methods_help())
    uniform = ", ".join(n for n, m in all_methods().items() if not m.mixed)
    p.add_argument("--bits", type=int, help=f"uniform precision ({uniform})")
    p.add_argument("--budget-bits", type=float, help="mixed precision budget: average bits per weight")
    p.add_argument("--compression", type=float, help="mixed precision budget: compression ratio of the model")
    p.add_argument("--budget-mb", type=float, help="mixed precision budget: model size in MB")
    p.add_argument("--candidates", type=int_list, default=[1, 2, 4, 8],
                   help="candidate precisions of the mixed-precision methods (comma-separated)")
    p.add_argument("--per-row", action="store_true", help="one scale per row instead of per group")
    bands = p.add_mutually_exclusive_group()
    bands.add_argument("--bands", type=int, help="split vocabulary-sized matrices (embedding, output) into K row "
                       "bands that double in size: word-frequency classes of a frequency-ordered vocabulary")
    bands.add_argument("--band-edges", type=int_list, help="... or at these row boundaries (comma-separated)")
    p.add_argument("--train", dest="train_text", metavar="FILE", help="training text (methods that train)")
    p.add_argument("--valid", dest="valid_text", metavar="FILE",
                   help="validation text (reported; Hessian and KL sensitivities)")
    p.add_argument("--test", dest="test_text", metavar="FILE", help="test text (reported)")
    d = FinetuneOptions()
    p.add_argument("--steps", type=int, default=d.steps, help="fine-tuning steps")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="fine-tuning learning rate (Adam; warm-up, then cosine decay to 0)")
    p.add_argument("--tokens-per-batch", type=int, default=2048,
                   help="tokens per fine-tuning and held-out batch, padding included")
    p.add_argument("--max-len", type=int, default=128,
                   help="longest sequence; longer sentences are cut into windows")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the forward pass")
    p.add_argument("--distill", type=float, default=d.distill,
                   help="weight of distillation from the full-precision model (0: cross entropy only)")
    p.add_argument("--plan-trainer", choices=plan_trainers(), default="admm",
                   help="how " + ", ".join(mixed_methods()) + " train their chosen precisions")
    p.add_argument("--seed", type=int, default=0, help="random seed of batches, initialisation and sampling")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cpu, or cuda for the "
                   "GPU of each process's LOCAL_RANK)")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="fine-tuning steps between checkpoints in OUT/checkpoints (0: only on SIGINT/SIGTERM)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing result in OUT (and discard a checkpoint of another configuration)")
    add_method_flags(p)
    add_quiet_option(p)
    p.set_defaults(func=cmd_quantize)


def _register_inspect(sub):
    p = add_command(
        sub, "quant-inspect", help="per-group bits, scales and sizes of a packed model",
        description="Reads a packed (quantized) model directory and prints, per weight group, its precision, "
                    "scales and size, then the model's totals: a table, or JSON with --json.",
        example="asr-lm-quant quant-inspect --lm-dir exp/lm_hessian8x --json exp/lm_hessian8x/inspect.json")
    p.add_argument("--lm-dir", dest="model", metavar="LM_DIR", help="packed model directory")
    p.alias("--model", "--lm-dir")
    positional_fallback(p, "--lm-dir")
    add_json_option(p, "the report (instead of a table)", bare_is_stdout=True)
    p.set_defaults(func=cmd_inspect)


def _register_sweep(sub):
    p = add_command(
        sub, "quant-sweep", help="run a list of quantization systems and tabulate them",
        description="Runs the systems of a JSON file (see asr_lm_quant/quant/sweep.py); writes OUT/<system>/, "
                    "OUT/results.json, OUT/results.md and PNG plots. A system that is done is not run again.",
        example="asr-lm-quant quant-sweep --systems conf/quant_systems.json --lm-dir base=exp/lm "
                "--train data/lm/train.txt --valid data/lm/valid.txt --test data/lm/test.txt --out exp/quant")
    p.add_argument("--systems", required=True, type=existing_file, help="systems JSON file")
    p.add_argument("--lm-dir", dest="model", action="append", default=[], metavar="NAME=DIR",
                   help="a model directory under the name the systems file uses (repeatable)")
    p.alias("--model", "--lm-dir")
    p.add_argument("--train", help="training text")
    p.add_argument("--valid", help="validation text")
    p.add_argument("--test", help="test text")
    p.add_argument("--only", type=split_list, help="comma-separated system names to run")
    p.add_argument("--worker", action="store_true",
                   help="one of several parallel jobs (e.g. run.pl JOB=1:N ...): run the systems no other job "
                        "holds, costliest first, and write no table; then run once more without --worker to "
                        "tabulate")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", help="output directory")
    positional_fallback(p, "--out")
    add_quiet_option(p)
    p.set_defaults(func=cmd_sweep)


def cmd_quantize(args):
    import torch

    from asr_lm_quant.quant.pipeline import QuantConfig, run
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = QuantConfig.from_dict({
        "model": args.model, "out": args.out, "method": args.method,
        "train_text": args.train_text, "valid_text": args.valid_text, "test_text": args.test_text,
        "bits": args.bits, "budget_bits": args.budget_bits, "compression": args.compression,
        "budget_mb": args.budget_mb, "candidates": args.candidates,
        "per_row": args.per_row,
        "bands": args.band_edges or args.bands,
        "tokens_per_batch": args.tokens_per_batch, "max_len": args.max_len,
        "finetune": FinetuneOptions(steps=args.steps, lr=args.lr, bf16=args.bf16, seed=args.seed,
                                    distill=args.distill),
        "plan_trainer": args.plan_trainer, "seed": args.seed, "device": args.device,
        "checkpoint_every": args.checkpoint_every, **config_from_args(args)})
    import torch.distributed as dist
    try:
        res = run(cfg, overwrite=args.overwrite)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if res:  # rank 0
        print(json.dumps({k: res.get(k) for k in ("method", "avg_bits", "size_mb", "compression", "valid_ppl",
                                                  "test_ppl")}))


def cmd_inspect(args):
    from asr_lm_quant.quant.packed import format_inspect, inspect_packed
    rep = inspect_packed(args.model)
    if args.json:
        write_json_output(args.json, rep)
    else:
        print(format_inspect(rep))


def cmd_sweep(args):
    from asr_lm_quant.errors import InputError
    from asr_lm_quant.quant.sweep import results_table, run_sweep
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    models = {}
    for m in args.model:
        if "=" not in m:
            raise InputError(None, f"--model takes NAME=DIR, not {m!r}", key="--model")
        k, v = m.split("=", 1)
        models[k] = v
    rows = run_sweep(args.systems, args.out, models=models,
                     texts={"train": args.train, "valid": args.valid, "test": args.test},
                     only=args.only, worker=args.worker)
    print(results_table(rows), end="")
