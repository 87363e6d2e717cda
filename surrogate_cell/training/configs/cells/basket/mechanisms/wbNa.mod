: Transient Na current of the Wang & Buzsaki (1996) fast-spiking interneuron model
: (J Neurosci 16:6402): ina = gnabar m_inf^3 h (v - ena), with m instantaneous,
: m_inf = am/(am + bm), and h kinetics scaled by phi = 5.
: phi is fixed as published: there is no temperature dependence (celsius is ignored).
: ena is the ion's reversal, set in the cell's hoc (+55 mV in the published model).
NEURON {
    SUFFIX wbNa
    USEION na READ ena WRITE ina
    RANGE gnabar, gna, phi
}
UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}
PARAMETER {
    gnabar = 0.035 (S/cm2)
    phi = 5
}
ASSIGNED {
    v (mV)
    ena (mV)
    ina (mA/cm2)
    gna (S/cm2)
    hinf
    htau (ms)
}
STATE {
    h
}
INITIAL {
    rates(v)
    h = hinf
}
BREAKPOINT {
    SOLVE states METHOD cnexp
    gna = gnabar*minf(v)^3*h
    ina = gna*(v - ena)
}
DERIVATIVE states {
    rates(v)
    h' = (hinf - h)/htau
}
PROCEDURE rates(vm (mV)) {
    LOCAL ah, bh
    ah = 0.07*exp(-(vm + 58)/20)
    bh = 1/(1 + exp(-(vm + 28)/10))
    hinf = ah/(ah + bh)
    htau = 1/(phi*(ah + bh))
}
FUNCTION minf(vm (mV)) {
    LOCAL am, bm
    : am = 0.1 (v + 35)/(1 - exp(-(v + 35)/10)) = x/(1 - exp(-x)) with x = (v + 35)/10
    am = x_over_1_minus_exp((vm + 35)/10)
    bm = 4*exp(-(vm + 60)/18)
    minf = am/(am + bm)
}
FUNCTION x_over_1_minus_exp(x) {
    : x/(1 - exp(-x)), continued by its Taylor series at the removable singularity x = 0
    if (fabs(x) < 1e-6) {
        x_over_1_minus_exp = 1 + x/2
    } else {
        x_over_1_minus_exp = x/(1 - exp(-x))
    }
}
