: Slow (persistent) potassium current of the axon (Hay et al. 2011). g = gbar m^2 h.
: Rates use the shifted voltage u = v + 10 mV.
NEURON {
    SUFFIX K_Pst
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
    g = gbar*m*m*h
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
    m_inf = 1/(1 + exp(-(u + 1)/12))
    if (u < -50) {
        tau_m = (1.25 + 175.03*exp(0.026*u))/qt
    } else {
        tau_m = (1.25 + 13*exp(-0.026*u))/qt
    }
    h_inf = 1/(1 + exp((u + 54)/11))
    tau_h = (360 + (1010 + 24*(u + 55))*exp(-((u + 75)/48)^2))/qt
}
