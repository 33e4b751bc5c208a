// BF16 matrix-vector throughput of sq_matvec_bf16 (1 thread; 8 copies of the matrix so weights come from DRAM).
// gcc -O3 -ISources/CSquintKernels/include scripts/bench/matvec.c Sources/CSquintKernels/{nn,q4,convert}.c -lm -o /tmp/mv && /tmp/mv
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "squint_kernels.h"
#include "squint_q4.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  int out=11008, in=4096, copies=8;
  uint16_t *w[8]; for(int c=0;c<copies;c++){w[c]=malloc((size_t)out*in*2); for(size_t i=0;i<(size_t)out*in;i++) w[c][i]=0x3c00+(i%255);}
  float *x=malloc(in*4),*y=malloc(out*4); for(int i=0;i<in;i++)x[i]=0.5f;
  for(int r=0;r<3;r++){
    double t=now(); for(int c=0;c<copies;c++) sq_matvec_bf16(w[c],x,NULL,y,in,0,out); t=(now()-t)/copies;

    printf("sq_matvec_bf16 11008x4096, 1 thread: %.2f ms %.1f GB/s\n", t*1e3, out*(double)in*2/t/1e9);
  }
}
