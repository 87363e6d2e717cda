: High-voltage-activated calcium current (Hay et al. 2011). g = gbar m^2 h, i = g (v - eca).
NEURON {
    SUFFIX Ca_HVA
    USEION ca READ eca WRITE ica
    RANGE gbar, g, ica
}
UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}
PARAMETER { gbar = 0.00001 (S/cm2) }
ASSIGNED {
    v (mV)
    eca (mV)
    ica (mA/cm2)
    g (S/cm2)
    m_inf h_inf
    tau_m (ms)
    tau_h (ms)
}
STATE { m h }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m*m*h
    ica = g*(v - eca)
    CONDUCTANCE g USEION ca  : di/dv = g: NEURON skips evaluating the current a second time
}
DERIVATIVE states {
    rates(v)
    m' = (m_inf - m)/tau_m
    h' = (h_inf - h)/tau_h
}
INITIAL {
    rates(v)
    m = m_inf
    h = h_inf
}
PROCEDURE rates(vm (mV)) {
    LOCAL u, a, b
    u = -27 - vm
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    a = 0.055*u/(exp(u/3.8) - 1)
    b = 0.94*exp((-75 - vm)/17)
    m_inf = a/(a + b)
    tau_m = 1/(a + b)
    a = 0.000457*exp((-13 - vm)/50)
    b = 0.0065/(exp((-vm - 15)/28) + 1)
    h_inf = a/(a + b)
    tau_h = 1/(a + b)
}
