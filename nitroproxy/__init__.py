"""NitroProxy: a fast, private, self-hosted LLM API router."""

__version__ = "0.1.0"
