"""Grounding: every claim of an answer checked against the retrieved passages before the answer is served.

    from grounding import Grounder
    grounder = Grounder(settings)        # one per process, closed with the other services
    grounded = grounder.verify(question, answer_result, passages, risk="low", regenerate=None)

Stages: claims.py (split) -> evidence.py (select) -> checks.py (deterministic signals) -> crossencoder.py
(trained verifier) and judge.py (optional LLM judge) -> calibrate.py (one score, thresholds per risk) ->
verifier.py (the scorer, shared with ``attest verify``) -> decide.py (serve / repair / reject / review).
"""

__all__ = ["ClaimVerdict", "GroundedAnswer", "Grounder"]


def __getattr__(name: str):
    # Lazy: grounding.training (run on a GPU machine with only torch and transformers) imports submodules
    # of this package without pulling in the service's dependencies.
    if name in __all__:
        from grounding import decide

        return getattr(decide, name)
    raise AttributeError(name)
