: Persistent sodium current of the axon (Hay et al. 2011). g = gbar m^3 h.
NEURON {
    SUFFIX Nap_Et2
    USEION na READ ena WRITE ina
    RANGE gbar, g, ina
}
UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}
PARAMETER { gbar = 0.00001 (S/cm2) }
ASSIGNED {
    v (mV)
    ena (mV)
    ina (mA/cm2)
    g (S/cm2)
    celsius (degC)
    m_inf h_inf
    tau_m (ms)
    tau_h (ms)
}
STATE { m h }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m*m*m*h
    ina = g*(v - ena)
    CONDUCTANCE g USEION na  : di/dv = g: NEURON skips evaluating the current a second time
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
    LOCAL qt, u, a, b
    qt = 2.3^((celsius - 21)/10)
    m_inf = 1/(1 + exp(-(vm + 52.6)/4.6))
    u = vm + 38
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    a = 0.182*u/(1 - exp(-u/6))
    b = 0.124*(-u)/(1 - exp(u/6))
    tau_m = 6/((a + b)*qt)
    h_inf = 1/(1 + exp((vm + 48.8)/10))
    u = vm + 17
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    a = -2.88e-6*u/(1 - exp(u/4.63))
    u = vm + 64.4
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    b = 6.94e-6*u/(1 - exp(-u/2.63))
    tau_h = 1/((a + b)*qt)
}
