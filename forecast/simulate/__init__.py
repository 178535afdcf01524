"""Monte Carlo simulation of the funnel: numba kernels and their Python driver."""

from forecast.simulate.engine import Pipeline, SimulationResult, simulate, simulate_history

__all__ = ["Pipeline", "SimulationResult", "simulate", "simulate_history"]
