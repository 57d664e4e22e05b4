"""The bundled mock LLM provider; import its public API from ``nitroproxy.mock_provider``."""
