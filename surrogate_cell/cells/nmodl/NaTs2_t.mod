: Transient sodium current of the soma and apical dendrite (Hay et al. 2011).
: g = gbar m^3 h, rates from hay_l5pc_biophysics.md.
NEURON {
    SUFFIX NaTs2_t
    USEION na READ ena WRITE ina
    RANGE gbar, g, ina
}
UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}
PARAMETER {
    gbar = 0.00001 (S/cm2)
    vhalf_m = -32 (mV)
    vhalf_h = -60 (mV)
}
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
    u = vm - vhalf_m
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    a = 0.182*u/(1 - exp(-u/6))
    b = 0.124*(-u)/(1 - exp(u/6))
    m_inf = a/(a + b)
    tau_m = 1/((a + b)*qt)
    u = vm - vhalf_h
    if (fabs(u) < 1e-6) { u = u + 0.0001 }
    a = -0.015*u/(1 - exp(u/6))
    b = -0.015*(-u)/(1 - exp(-u/6))
    h_inf = a/(a + b)
    tau_h = 1/((a + b)*qt)
}
