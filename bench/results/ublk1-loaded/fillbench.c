// Cost per MiB of ways to fill/copy memory, to tell TCG's rep-string emulation from page faults.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <immintrin.h>
#define MB (1<<20)
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void rep_stosb(void*d,size_t n){asm volatile("rep stosb":"+D"(d),"+c"(n):"a"(0):"memory");}
static void rep_stosq(void*d,size_t n){n/=8;asm volatile("rep stosq":"+D"(d),"+c"(n):"a"(0):"memory");}
static void rep_movsb(void*d,const void*s,size_t n){asm volatile("rep movsb":"+D"(d),"+S"(s),"+c"(n)::"memory");}
static void rep_movsq(void*d,const void*s,size_t n){n/=8;asm volatile("rep movsq":"+D"(d),"+S"(s),"+c"(n)::"memory");}
static void sse_fill(void*d,size_t n){__m128i z=_mm_setzero_si128();for(size_t i=0;i<n;i+=64){__m128i*p=(__m128i*)((char*)d+i);_mm_store_si128(p,z);_mm_store_si128(p+1,z);_mm_store_si128(p+2,z);_mm_store_si128(p+3,z);}}
static void q_fill(void*d,size_t n){volatile unsigned long*p=d;for(size_t i=0;i<n/8;i+=4){p[i]=0;p[i+1]=0;p[i+2]=0;p[i+3]=0;}}
int main(int argc,char**argv){
  int iters=argc>1?atoi(argv[1]):200;
  char*a=mmap(0,MB,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE,-1,0);
  char*b=mmap(0,MB,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE,-1,0);
  memset(b,1,MB);
  int z=open("/dev/zero",O_RDONLY);
  char path[]="/tmp/fillbench.XXXXXX";int f=mkstemp(path);unlink(path);
  if(write(f,b,MB)!=MB)return 1;
  const char*names[]={"memset (glibc)","rep stosb","rep stosq","sse stores","8-byte stores","memcpy (glibc)","rep movsb","rep movsq","pread /dev/zero","pread tmpfs file","pwrite tmpfs file"};
  for(int m=0;m<11;m++){
    double t0=now();
    for(int i=0;i<iters;i++){
      switch(m){
      case 0:memset(a,0,MB);break;case 1:rep_stosb(a,MB);break;case 2:rep_stosq(a,MB);break;
      case 3:sse_fill(a,MB);break;case 4:q_fill(a,MB);break;case 5:memcpy(a,b,MB);break;
      case 6:rep_movsb(a,b,MB);break;case 7:rep_movsq(a,b,MB);break;
      case 8:if(pread(z,a,MB,0)!=MB)return 2;break;case 9:if(pread(f,a,MB,0)!=MB)return 3;break;
      case 10:if(pwrite(f,b,MB,0)!=MB)return 4;break;}
    }
    printf("%-20s %8.0f us/MiB\n",names[m],(now()-t0)*1e6/iters);
  }
  return 0;
}
