: Delayed-rectifier K current of the Wang & Buzsaki (1996) fast-spiking interneuron model
: (J Neurosci 16:6402): ik = gkbar n^4 (v - ek), with n kinetics scaled by phi = 5.
: phi is fixed as published: there is no temperature dependence (celsius is ignored).
: ek is the ion's reversal, set in the cell's hoc (-90 mV in the published model).
NEURON {
    SUFFIX wbKdr
    USEION k READ ek WRITE ik
    RANGE gkbar, gk, phi
}
UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}
PARAMETER {
    gkbar = 0.009 (S/cm2)
    phi = 5
}
ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    gk (S/cm2)
    ninf
    ntau (ms)
}
STATE {
    n
}
INITIAL {
    rates(v)
    n = ninf
}
BREAKPOINT {
    SOLVE states METHOD cnexp
    gk = gkbar*n^4
    ik = gk*(v - ek)
}
DERIVATIVE states {
    rates(v)
    n' = (ninf - n)/ntau
}
PROCEDURE rates(vm (mV)) {
    LOCAL an, bn
    : an = 0.01 (v + 34)/(1 - exp(-(v + 34)/10)) = 0.1 x/(1 - exp(-x)) with x = (v + 34)/10
    an = 0.1*x_over_1_minus_exp((vm + 34)/10)
    bn = 0.125*exp(-(vm + 44)/80)
    ninf = an/(an + bn)
    ntau = 1/(phi*(an + bn))
}
FUNCTION x_over_1_minus_exp(x) {
    : x/(1 - exp(-x)), continued by its Taylor series at the removable singularity x = 0
    if (fabs(x) < 1e-6) {
        x_over_1_minus_exp = 1 + x/2
    } else {
        x_over_1_minus_exp = x/(1 - exp(-x))
    }
}
