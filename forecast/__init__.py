"""Monte Carlo pipeline forecasting: a day-by-day stochastic funnel with expiry and recapture."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pipeline-forecast")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
