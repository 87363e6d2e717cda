"""Training windows cut from stored simulations."""
