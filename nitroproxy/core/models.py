"""Model names: the one place that says how a name a client or config wrote is normalised.

A public model may carry a routing suffix (``gpt-4o:floor``, ``gpt-4o:nitro``); an upstream
model may carry a provider prefix (``openai/gpt-4o``) and any capitalisation. Price tables and
tokenizer choice look at the *bare* name.
"""

from __future__ import annotations

ROUTING_SUFFIXES = (":floor", ":nitro")


def split_suffix(model: str) -> tuple[str, str | None]:
    """``"gpt-4o:floor"`` → ``("gpt-4o", ":floor")``. Only a trailing suffix counts, and a
    name that is nothing but a suffix stays whole, so ``"ft:gpt-4o:org"`` is left alone."""
    for suffix in ROUTING_SUFFIXES:
        if model.endswith(suffix) and len(model) > len(suffix):
            return model[: -len(suffix)], suffix
    return model, None


def bare_name(model: str) -> str:
    """``"openai/GPT-4o:floor"`` → ``"gpt-4o"``: lower case, no provider prefix, no routing
    suffix. Fine-tune names (``"ft:..."``) are kept as they are; callers decide what a
    fine-tune means for them."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    return split_suffix(name)[0]
