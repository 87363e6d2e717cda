"""surrogate_cell: trained neural-network surrogates of NEURON cells for LFPy."""

__version__ = "0.1.0"
