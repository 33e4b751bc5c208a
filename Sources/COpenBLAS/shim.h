// OpenBLAS (Debian libopenblas-dev): CBLAS for matrix products, LAPACK (liblapacke-dev's lapack.h,
// implemented inside libopenblas.so) for the Cholesky factorisations GPTQ needs.
#include <x86_64-linux-gnu/cblas.h>
#include <lapack.h>
