"""The HTTP gateway: OpenAI- and Anthropic-compatible endpoints in front of one Router."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
