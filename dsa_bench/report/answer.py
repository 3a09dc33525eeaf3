"""The answer, as sentences: what the report's answer box lists and what every command ends with in
the terminal. Built from the summary (headline.summary_json, i.e. summary.json) and nothing else, so
the page, the terminal and the JSON say the same thing, phrased in one place.

- a timing run: per DSA implementation, phase, batch and k, the speedup, the measured latency
  crossover, the stage shares and attention-only $/M tokens (headline.headline_text); implementations
  whose sentences are otherwise word for word the same are merged into one;
- a run with cost curves: the full model's cost per token (DSA cheaper from, $/M at the last
  position), labelled measured or modelled and with the GPU it is priced on and why.
"""
from __future__ import annotations

from typing import Any, Optional

from dsa_bench.crossover import fmt_context
from dsa_bench.report.costdata import crossing_text
from dsa_bench.report.headline import headline_text

TOKENS_NOTE = "token counts in K = 1024 tokens"
TIMING_WORDS = {"measured": "measured kernels", "modelled": "modelled: roofline",
                "mixed": "measured, roofline where not timed"}


def _names(impls: list[str]) -> str:
    return impls[0] if len(impls) == 1 else ", ".join(impls[:-1]) + " and " + impls[-1]


def headline_sentences(headlines: list[dict[str, Any]]) -> list[str]:
    """headline_text of each headline, merging implementations whose sentences differ only by the name."""
    groups: dict[str, list[str]] = {}
    for h in headlines:
        groups.setdefault(headline_text(h, impl="\0"), []).append(h["dsa_impl"])
    out = []
    for text, impls in groups.items():
        impls = list(dict.fromkeys(impls))
        if len(impls) > 1:  # "A and B (the same here) are 1.30x faster ..."
            text = text.replace("\0 is ", f"{_names(impls)} (the same here) are ", 1)
        out.append(text.replace("\0", impls[0], 1))
    return out


def pricing_text(fc: dict[str, Any]) -> str:
    """'priced on H200 (this run's GPU) at $2/GPU-hour', or why it is another GPU."""
    gpu, run_gpu, timed = fc.get("gpu"), fc.get("run_gpu"), fc.get("measured_gpu")
    price = fc.get("gpu_hour_usd")
    where = f"priced on {gpu}" + (f" at ${price:g}/GPU-hour" if price else "")
    if run_gpu and gpu == run_gpu:
        return where.replace(f"on {gpu}", f"on {gpu} (this run's GPU)", 1)
    if run_gpu:
        return f"{where} (the run's cost settings; it ran on {run_gpu})"
    if timed and timed != gpu:
        return f"{where} (timings from {timed}, rescaled by the roofline ratio)"
    return where


def full_cost_sentence(fc: Optional[dict[str, Any]]) -> Optional[str]:
    """The full model's cost per token in one sentence, or None without cost curves."""
    if not fc or not fc.get("phases"):
        return None
    parts = []
    for p in fc["phases"]:
        x0 = p["crossover_tokens"]
        cross = crossing_text(x0, tuple(p["bracket_tokens"]) if p.get("bracket_tokens") else None,
                              p.get("held_below_tokens"))  # the cost plot's own phrase
        if p.get("paper_crossover_tokens"):
            cross += f" (the paper's Figure 3: ≈ {fmt_context(p['paper_crossover_tokens'])})"
        u = p["usd_per_million_tokens"]
        parts.append(f"{p['phase']} ({TIMING_WORDS.get(p['timing'], p['timing'])}): {cross}; "
                     f"${u['dsa']:.3g} vs ${u['dense']:.3g} per million tokens at {fmt_context(p['position_tokens'])}")
    first = fc["phases"][0]
    return (f"cost per token of the full model ({first['dsa_model']} vs {first['dense_model']}, "
            f"{pricing_text(fc)}): " + "; ".join(parts) + ".")


def answer_sentences(summary: dict[str, Any]) -> list[str]:
    """Every sentence of a timing or cost run's answer, headlines first."""
    out = headline_sentences(summary.get("headlines") or [])
    full = full_cost_sentence(summary.get("full_model_cost"))
    if full:
        out.append(full)
    return out


def quality_sentences(head: dict[str, Any]) -> list[str]:
    """A `phase: quality` run's answer (its summary.json): recall and output error at the sparse k, and the loss."""
    at = head.get("at_sparse_topk") or {}
    methods = "; ".join(f"{m} recall {v['recall']:.3f}, output error {v['output_rel_err']:.3f}"
                        for m, v in at.items() if m != "k" and isinstance(v, dict))
    loss = ", ".join(f"{st} {v['first']:.3g} -> {v['last']:.3g}" for st, v in (head.get("kl_loss") or {}).items())
    out = [f"at k = {at.get('k')}: {methods}."] if methods else []
    if loss:
        out.append(f"KL loss (first -> last steps): {loss}.")
    return out
