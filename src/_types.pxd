# The one fused type: every kernel is written once and compiled for float32 and float64.
ctypedef fused real:
    float
    double
