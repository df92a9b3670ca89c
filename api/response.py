"""JSON responses that keep decimals exact: ``0.1`` leaves as the number 0.1."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response
from litestar.serialization import default_serializer
from litestar.types import Serializer

_encoder = msgspec.json.Encoder(enc_hook=default_serializer, decimal_format="number")


class ExactJSONResponse(Response[Any]):
    def render(
        self, content: Any, media_type: str, enc_hook: Serializer = default_serializer
    ) -> bytes:
        if isinstance(content, bytes | str) or "json" not in media_type:
            return super().render(content, media_type, enc_hook)
        return _encoder.encode(content)
