"""freshpaint-iterable: keep Iterable in step with Freshpaint analytics events, on your own Kafka."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
