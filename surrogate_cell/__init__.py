"""surrogate_cell: trained neural-network surrogates of NEURON cells for LFPy."""

__version__ = "0.1.0"

__all__ = ["SurrogateCell", "SurrogateNetwork", "__version__"]


def __getattr__(name):
    # Lazy: importing the package must not pull in LFPy, NEURON and torch.
    if name == "SurrogateCell":
        from surrogate_cell.cell import SurrogateCell

        return SurrogateCell
    if name == "SurrogateNetwork":
        from surrogate_cell.network import SurrogateNetwork

        return SurrogateNetwork
    raise AttributeError(f"module 'surrogate_cell' has no attribute {name!r}")
