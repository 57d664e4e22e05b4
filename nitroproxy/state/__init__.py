"""Shared state for several processes (``state.backend: redis``): limits and budgets
(``limiter``), routing health (``health``), propagation (``bus``), one Redis link
(``link``) and the component that owns them (``shared``)."""
