"""ponder's own verifiers (self-judge, LLM judge, code tests, cross-check, PRM over HTTP) and
verifier quality measures. Each registers itself in the verifier registry
(ponder.runtime.verifiers), which imports these modules the first time it is asked."""

from ponder.verify.quality import auroc, best_index, selection_quality

__all__ = ["auroc", "best_index", "selection_quality"]
