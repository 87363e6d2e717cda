: Low-voltage-activated (T-type) calcium current (Hay et al. 2011). g = gbar m^2 h.
: Rates use the shifted voltage u = v + 10 mV.
NEURON {
    SUFFIX Ca_LVAst
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
    celsius (degC)
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
    LOCAL qt, u
    qt = 2.3^((celsius - 21)/10)
    u = vm + 10
    m_inf = 1/(1 + exp((u + 30)/(-6)))
    tau_m = (5 + 20/(1 + exp((u + 25)/5)))/qt
    h_inf = 1/(1 + exp((u + 80)/6.4))
    tau_h = (20 + 50/(1 + exp((u + 40)/7)))/qt
}
