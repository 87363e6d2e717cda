: Small-conductance calcium-activated potassium current (Hay et al. 2011). g = gbar z.
NEURON {
    SUFFIX SK_E2
    USEION k READ ek WRITE ik
    USEION ca READ cai
    RANGE gbar, g, ik
}
UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
    (mM) = (milli/liter)
}
PARAMETER {
    gbar = 0.000001 (S/cm2)
    tau_z = 1 (ms)
}
ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    cai (mM)
    g (S/cm2)
    z_inf
}
STATE { z }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*z
    ik = g*(v - ek)
    CONDUCTANCE g USEION k  : di/dv = g: NEURON skips evaluating the current a second time
}
DERIVATIVE states {
    rates(cai)
    z' = (z_inf - z)/tau_z
}
INITIAL {
    rates(cai)
    z = z_inf
}
PROCEDURE rates(ca (mM)) {
    LOCAL c
    c = ca
    if (c < 1e-7) { c = 1e-7 }
    z_inf = 1/(1 + (0.00043/c)^4.8)
}
