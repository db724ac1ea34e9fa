"""Mixed precision by differentiable search: a super-network mixes every candidate precision per group and
learns the mixture under a size penalty; the most likely precision of each group is kept."""

from asr_lm_quant.quant.methods import Flag, Method
from asr_lm_quant.quant.options import SearchOptions


def choose(ctx, names, record):
    import copy

    from asr_lm_quant.quant.options import FinetuneOptions
    from asr_lm_quant.quant.search import search_precisions
    cfg, ft = ctx.cfg, ctx.cfg.finetune
    searched = copy.deepcopy(ctx.model)
    sft = FinetuneOptions(**{**ft.to_dict(), "steps": cfg.search_steps or ft.steps})
    bits, record["search"] = search_precisions(searched, cfg.candidates, ctx.budget, ctx.train, sft, cfg.search,
                                               cfg.per_row, names, ctx.teacher, ctx.rt)
    return bits, None


def handler(ctx):
    from asr_lm_quant.quant.mixed import run_mixed
    return run_mixed(ctx, choose)


METHOD = Method(
    name="search", help="differentiable search over the candidate precisions (mixed, --budget-*)", cost=1.6,
    handler=handler, mixed=True, config={"search": SearchOptions, "search_steps": None},
    flags=(Flag("--gamma", "search.gamma", "search size penalty weight", float),
           Flag("--arch-lr", "search.arch_lr", "search logits learning rate", float),
           Flag("--gumbel", "search.gumbel", "search with Gumbel-softmax samples"),
           Flag("--search-steps", "search_steps", "search steps (default: --steps)", int)))
