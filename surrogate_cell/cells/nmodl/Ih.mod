: Hyperpolarisation-activated cation current (Hay et al. 2011). g = gbar m, i = g (v - ehcn).
NEURON {
    SUFFIX Ih
    NONSPECIFIC_CURRENT ihcn
    RANGE gbar, g, ihcn, ehcn
}
UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}
PARAMETER {
    gbar = 0.00001 (S/cm2)
    ehcn = -45 (mV)
}
ASSIGNED {
    v (mV)
    ihcn (mA/cm2)
    g (S/cm2)
    m_inf
    tau_m (ms)
}
STATE { m }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m
    ihcn = g*(v - ehcn)
    CONDUCTANCE g  : di/dv = g: NEURON skips evaluating the current a second time
}
DERIVATIVE states {
    rates(v)
    m' = (m_inf - m)/tau_m
}
INITIAL {
    rates(v)
    m = m_inf
}
PROCEDURE rates(vm (mV)) {
    LOCAL u, a, b
    u = vm + 154.9
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    a = 6.43e-3*u/(exp(u/11.9) - 1)
    b = 0.193*exp(vm/33.1)
    m_inf = a/(a + b)
    tau_m = 1/(a + b)
}
