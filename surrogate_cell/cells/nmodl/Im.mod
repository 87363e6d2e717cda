: Muscarinic (M-type) potassium current (Hay et al. 2011). g = gbar m.
NEURON {
    SUFFIX Im
    USEION k READ ek WRITE ik
    RANGE gbar, g, ik
}
UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}
PARAMETER { gbar = 0.00001 (S/cm2) }
ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    g (S/cm2)
    celsius (degC)
    m_inf
    tau_m (ms)
}
STATE { m }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m
    ik = g*(v - ek)
    CONDUCTANCE g USEION k  : di/dv = g: NEURON skips evaluating the current a second time
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
    LOCAL qt, a, b
    qt = 2.3^((celsius - 21)/10)
    a = 3.3e-3*exp(0.1*(vm + 35))
    b = 3.3e-3*exp(-0.1*(vm + 35))
    m_inf = a/(a + b)
    tau_m = 1/((a + b)*qt)
}
