"""The evaluation's exceptions: :class:`EvaluationError` for inputs that cannot be scored
(image counts or sizes that do not pair, unknown metrics, bad options) and
:class:`MissingWeightsError` for metric networks (Inception, LPIPS) whose weights are not
installed or not where they were said to be. Every other evaluation module raises these."""


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (image counts or sizes that do not pair, bad options)."""


class MissingWeightsError(FileNotFoundError):
    """Metric weights (Inception, LPIPS) that are not installed or not where they were said."""
