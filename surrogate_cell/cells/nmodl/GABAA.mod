: Inhibitory GABA_A synapse with deterministic release (Hay L5PC training data).
: Peak-normalised dual exponential: an event of weight w adds w*f to A (rise) and B
: (decay), g = gmax (B - A).
NEURON {
    POINT_PROCESS GABAA
    RANGE e, gmax, tau_r, tau_d, i, g
    NONSPECIFIC_CURRENT i
}
UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
}
PARAMETER {
    e = -80 (mV)
    gmax = 0.001 (uS)
    tau_r = 0.2 (ms)
    tau_d = 8.0 (ms)
}
ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    factor
}
STATE {
    A
    B
}
INITIAL {
    LOCAL tp
    A = 0
    B = 0
    tp = tau_r*tau_d/(tau_d - tau_r)*log(tau_d/tau_r)
    factor = 1/(exp(-tp/tau_d) - exp(-tp/tau_r))
}
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gmax*(B - A)
    i = g*(v - e)
    CONDUCTANCE g  : di/dv = g: NEURON skips evaluating the current a second time
}
DERIVATIVE states {
    A' = -A/tau_r
    B' = -B/tau_d
}
NET_RECEIVE(weight) {
    A = A + weight*factor
    B = B + weight*factor
}
