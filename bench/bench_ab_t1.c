/* bench_ab_t1.c - A/B of two builds of the AVX-512 T=1 matvec kernels in ONE process on ONE
 * pool, interleaved per repetition, so a shared machine's load swings hit both alike.
 * "old" = another kern_avx512.c compiled with its table renamed, e.g. the one before the
 * decode kernels:
 *   git show 8c74f54:src/cpu/kern_avx512.c > /tmp/old512.c
 *   cc -std=c11 -D_GNU_SOURCE -Isrc -Iinclude -O2 -Dcpu_kernels_avx512=cpu_kernels_avx512_orig \
 *      -c /tmp/old512.c -o /tmp/old512.o
 *   cc -std=c11 -D_GNU_SOURCE -Isrc -Iinclude -O2 -o /tmp/ab bench/bench_ab_t1.c /tmp/old512.o \
 *      build-perf/libg4.a -lm -lpthread && /tmp/ab 5
 * (also for parameter sweeps: compile the current file with -DNV_PF=... as the "old" one).
 * Prints cold (1 GiB of weight copies cycled) and hot GB/s of weight bytes, N 15360 K 3840. */
#include "cpu/cpu_ops.h"
#include "cpu/cpu_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
extern const cpu_kernels cpu_kernels_avx512_orig;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint64_t rs=88172645463325252ull; static uint64_t rnd(void){rs^=rs<<13;rs^=rs>>7;rs^=rs<<17;return rs;}
enum{N=15360,K=3840};
typedef struct{const cpu_kernels*k;cpu_mm_job*j;int rows;}ctx;
static void task(void*v,int t,int th){(void)th;ctx*c=v;int n0=t*c->rows,n1=n0+c->rows<N?n0+c->rows:N;c->k->mm_rows(c->j,n0,n1);}
int main(int argc,char**argv){
  int reps=argc>1?atoi(argv[1]):5; tp_pool*pool; tp_create(2,&pool,NULL); cpu_tables_init();
  const cpu_kernels*ks[2]={&cpu_kernels_avx512_orig,&cpu_kernels_avx512};
  float*x=aligned_alloc(64,K*4),*y=malloc(N*4),*xp=aligned_alloc(64,(K+128)*4);
  for(int i=0;i<K;i++)x[i]=(float)((int)(rnd()%2001)-1000)/1000.0f;
  int types[3]={CPU_W_NVFP4,CPU_W_FP8,CPU_W_BF16}; const char*names[3]={"nvfp4","fp8","bf16"};
  double mem=cpu_mem_read_gbs(pool,(size_t)1<<30,3);
  printf("mem_read_gbs %.2f (new loop)\n",mem);
  for(int ti=0;ti<3;ti++){int type=types[ti];
    size_t rb=type==CPU_W_NVFP4?K/2:type==CPU_W_FP8?K:K*2, wb=rb*N, sb=type==CPU_W_NVFP4?(size_t)N*K/16:type==CPU_W_FP8?(size_t)N*4:0;
    int copies=(int)(((size_t)1<<30)/(wb+sb))+1;
    uint8_t*w=malloc(wb*copies),*s=sb?malloc(sb*copies):NULL;
    for(size_t i=0;i<wb*copies;i++){uint8_t b=(uint8_t)rnd(); if(type==CPU_W_FP8&&(b&0x7F)==0x7F)b=0x38; if(type==CPU_W_BF16&&(i&1))b=(uint8_t)(0x3C|(b&0x80)); w[i]=b;}
    if(type==CPU_W_NVFP4)for(size_t i=0;i<sb*copies;i++)s[i]=(uint8_t)(0x30+rnd()%16);
    if(type==CPU_W_FP8)for(size_t i=0;i<(size_t)N*copies;i++)((float*)s)[i]=0.001f;
    double best[2][2]={{1e30,1e30},{1e30,1e30}};
    for(int r=0;r<reps;r++)for(int v=0;v<2;v++)for(int cold=1;cold>=0;cold--){
      int calls=cold?copies:4; double t0=now();
      for(int c=0;c<calls;c++){int cc=cold?c:0;
        cpu_mm_job j={.type=type,.w=w+wb*cc,.row_bytes=rb,.scales=type==CPU_W_NVFP4?s+sb*cc:NULL,.gscale=2688.0f,
          .row_scale=type==CPU_W_FP8?s+sb*cc:NULL,.x=x,.y=y,.T=1,.N=N,.K=K};
        if(ks[v]->x_prep&&ks[v]->x_prep(&j,NULL)){ks[v]->x_prep(&j,xp);j.xp=xp;}
        int rows=(N+15)/16; rows=(rows+3)&~3; ctx c2={ks[v],&j,rows}; tp_run(pool,(N+rows-1)/rows,task,&c2);}
      double t=(now()-t0)/calls; if(t<best[v][cold])best[v][cold]=t;}
    for(int v=0;v<2;v++)printf("%-6s %s cold %6.2f GB/s  hot %6.2f GB/s\n",names[ti],v?"new":"old",(wb+sb)/best[v][1]/1e9,(wb+sb)/best[v][0]/1e9);
    fflush(stdout); free(w);free(s);}
  printf("mem_read_gbs_end %.2f\n",cpu_mem_read_gbs(pool,(size_t)1<<30,3));
  return 0;}
