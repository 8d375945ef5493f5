"""Why a Responses request cannot be translated to chat.completions: the two kinds of 400.

* ``NativeOnlyError``: a feature only a native Responses provider has (server-side state, hosted
  tools, OpenAI files...). ``feature`` names it, so the router can prefer a native candidate
  (``request.needs_native``); the message names the feature and the model.
* ``malformed``: the request itself is wrong (the real API would refuse it too).
"""

from __future__ import annotations

from sidecar.core.errors import BadRequestBodyError, UnsupportedParameterError

MODEL_PLACEHOLDER = "{model}"


class NativeOnlyError(UnsupportedParameterError):
    """A 400 naming a Responses feature that a translated (chat/Converse) route cannot honour."""

    def __init__(self, feature: str, why: str, *, param: str, model: str = MODEL_PLACEHOLDER
                 ) -> None:
        self.feature, self.why, self.model = feature, why, model
        super().__init__(
            f"{feature} ({why}) is not supported by model '{model}': it needs a provider with "
            "the native Responses API",
            param=param,
        )

    def for_model(self, model: str) -> NativeOnlyError:
        """The same error, its message naming ``model``."""
        return NativeOnlyError(self.feature, self.why, param=self.param or "", model=model)


def malformed(param: str, message: str) -> BadRequestBodyError:
    return BadRequestBodyError(f"{param}: {message}", param=param)
