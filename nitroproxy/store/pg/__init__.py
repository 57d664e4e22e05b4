"""PostgreSQL for the store (``storage.backend: postgres``, asyncpg): the same migrations as
SQLite through a thin dialect (``dialect``), run once under an advisory lock (``schema``),
usage records written in batches by ``COPY`` and idempotent by record id (``usage``), and
the advisory lock that lets one instance of many run the retention sweep (``locks``)."""
