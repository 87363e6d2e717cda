: Fast inactivating (transient) potassium current of the axon (Hay et al. 2011).
: g = gbar m^4 h; rates use the shifted voltage u = v + 10 mV.
NEURON {
    SUFFIX K_Tst
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
    m_inf h_inf
    tau_m (ms)
    tau_h (ms)
}
STATE { m h }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m*m*m*m*h
    ik = g*(v - ek)
    CONDUCTANCE g USEION k  : di/dv = g: NEURON skips evaluating the current a second time
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
    LOCAL qt, u
    qt = 2.3^((celsius - 21)/10)
    u = vm + 10
    m_inf = 1/(1 + exp(-u/19))
    tau_m = (0.34 + 0.92*exp(-((u + 71)/59)^2))/qt
    h_inf = 1/(1 + exp((u + 66)/10))
    tau_h = (8 + 49*exp(-((u + 73)/23)^2))/qt
}
