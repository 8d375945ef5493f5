"""model-router: route unmodified apps' OpenAI API calls by per-app rules and intent."""

__version__ = "0.1.0"
