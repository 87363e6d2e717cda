: Intracellular calcium in a submembrane shell with first-order decay (Hay et al. 2011).
NEURON {
    SUFFIX CaDynamics_E2
    USEION ca READ ica WRITE cai
    RANGE decay, gamma, minCai, depth
}
UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (mM) = (milli/liter)
    (um) = (micron)
}
PARAMETER {
    gamma = 0.05
    decay = 80 (ms)
    depth = 0.1 (um)
    minCai = 1e-4 (mM)
    faraday = 96485.309 (coulomb)
}
ASSIGNED { ica (mA/cm2) }
STATE { cai (mM) }
BREAKPOINT { SOLVE states METHOD cnexp }
DERIVATIVE states {
    : 10000 converts mA/cm2 / (C/mol * um) to mM/ms
    cai' = -10000*ica*gamma/(2*faraday*depth) - (cai - minCai)/decay
}
