"""``asr-lm-quant report``: the results table and plots of a recipe's exp/ directory."""

from __future__ import annotations

from asr_lm_quant.cli_args import add_command


def _report(args):
    from asr_lm_quant.report.build import build_report
    res = build_report(args.exp, args.layout, args.out, elapsed_s=args.elapsed)
    out = args.out or args.exp
    print(f"{out}/results.md, {out}/results.json, {len(res['plots'])} plots in {out}/plots/")


def register(sub):
    p = add_command(sub, "report", help="results table (markdown + JSON) and plots from a recipe's exp/ dir",
                    description="Reads the JSON files a recipe's stages leave under EXP (perplexities, first "
                                "pass and oracle WERs, quantization results, tuned rescoring WERs), where its "
                                "--layout file says they are, and writes results.md, results.json and "
                                "plots/*.png into OUT (default EXP).",
                    example="asr-lm-quant report --exp exp --out exp --layout conf/report_layout.json")
    p.add_argument("--exp", default="exp", help="experiment directory")
    p.add_argument("--layout", required=True,
                   help="the recipe's report layout (JSON: where its stages leave their results, what its systems "
                        "are called), e.g. recipes/mini/conf/report_layout.json")
    p.add_argument("--out", help="output directory (default: --exp)")
    p.add_argument("--elapsed", type=float, metavar="SECONDS", help="seconds the run took (printed in the header)")
    p.set_defaults(func=_report)
