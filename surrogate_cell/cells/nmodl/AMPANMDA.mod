: Excitatory AMPA + NMDA synapse with deterministic release (Hay L5PC training data).
: Each receptor is a peak-normalised dual exponential: an event of weight w adds w*f to
: both states A (rise) and B (decay), g = gmax (B - A). NMDA has a Mg2+ block.
NEURON {
    POINT_PROCESS AMPANMDA
    RANGE e, gmax_ampa, gmax_nmda, tau_r_ampa, tau_d_ampa, tau_r_nmda, tau_d_nmda, mg
    RANGE i, i_ampa, i_nmda, g_ampa, g_nmda
    NONSPECIFIC_CURRENT i
}
UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
    (mM) = (milli/liter)
}
PARAMETER {
    e = 0 (mV)
    gmax_ampa = 0.0004 (uS)
    gmax_nmda = 0.0004 (uS)
    tau_r_ampa = 0.3 (ms)
    tau_d_ampa = 3.0 (ms)
    tau_r_nmda = 2.0 (ms)
    tau_d_nmda = 70.0 (ms)
    mg = 1 (mM)
}
ASSIGNED {
    v (mV)
    i (nA)
    i_ampa (nA)
    i_nmda (nA)
    g_ampa (uS)
    g_nmda (uS)
    factor_ampa
    factor_nmda
}
STATE {
    A_ampa
    B_ampa
    A_nmda
    B_nmda
}
INITIAL {
    A_ampa = 0
    B_ampa = 0
    A_nmda = 0
    B_nmda = 0
    factor_ampa = peak_factor(tau_r_ampa, tau_d_ampa)
    factor_nmda = peak_factor(tau_r_nmda, tau_d_nmda)
}
BREAKPOINT {
    SOLVE states METHOD cnexp
    g_ampa = gmax_ampa*(B_ampa - A_ampa)
    g_nmda = gmax_nmda*(B_nmda - A_nmda)*mg_block(v)
    i_ampa = g_ampa*(v - e)
    i_nmda = g_nmda*(v - e)
    i = i_ampa + i_nmda
}
DERIVATIVE states {
    A_ampa' = -A_ampa/tau_r_ampa
    B_ampa' = -B_ampa/tau_d_ampa
    A_nmda' = -A_nmda/tau_r_nmda
    B_nmda' = -B_nmda/tau_d_nmda
}
FUNCTION peak_factor(tau_r (ms), tau_d (ms)) {
    LOCAL tp
    tp = tau_r*tau_d/(tau_d - tau_r)*log(tau_d/tau_r)
    peak_factor = 1/(exp(-tp/tau_d) - exp(-tp/tau_r))
}
FUNCTION mg_block(vm (mV)) {
    mg_block = 1/(1 + exp(-0.08*vm)*(mg/3.57))
}
NET_RECEIVE(weight) {
    A_ampa = A_ampa + weight*factor_ampa
    B_ampa = B_ampa + weight*factor_ampa
    A_nmda = A_nmda + weight*factor_nmda
    B_nmda = B_nmda + weight*factor_nmda
}
