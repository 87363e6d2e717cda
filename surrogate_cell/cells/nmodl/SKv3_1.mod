: Fast non-inactivating Kv3.1-type potassium current (Hay et al. 2011). g = gbar m.
NEURON {
    SUFFIX SKv3_1
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
    m_inf = 1/(1 + exp((vm - 18.7)/(-9.7)))
    tau_m = 4/(1 + exp((vm + 46.56)/(-44.14)))
}
