/*
 * scalapack.h (private): the BLACS, ScaLAPACK and PBLAS entry points LatentHook calls.
 *
 * Debian's libscalapack-openmpi ships no C header, so the prototypes are declared here once.
 * Fortran routines take every argument by reference; INTEGER is a 32-bit int (LP64 build).
 * Descriptors are int[9]: DTYPE, CTXT, M, N, MB, NB, RSRC, CSRC, LLD.
 */
#ifndef LH_LINALG_SCALAPACK_H
#define LH_LINALG_SCALAPACK_H

#include <mpi.h>

enum {
  LH_DESC_DTYPE,
  LH_DESC_CTXT,
  LH_DESC_M,
  LH_DESC_N,
  LH_DESC_MB,
  LH_DESC_NB,
  LH_DESC_RSRC,
  LH_DESC_CSRC,
  LH_DESC_LLD,
  LH_DESC_LEN
};

/* BLACS (C interface) */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);

/* ScaLAPACK tools */
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);

/* Redistribution between two block-cyclic layouts (any grids within ictxt). */
void pdgemr2d_(const int *m, const int *n, const double *a, const int *ia, const int *ja,
               const int *desca, double *b, const int *ib, const int *jb, const int *descb,
               const int *ictxt);

/* PBLAS */
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const double *alpha, const double *a, const int *ia, const int *ja, const int *desca,
             const double *b, const int *ib, const int *jb, const int *descb, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc);
void pdsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
             const double *a, const int *ia, const int *ja, const int *desca, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc);

/* ScaLAPACK solvers */
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info);
void pdposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *ia,
             const int *ja, const int *desca, double *b, const int *ib, const int *jb,
             const int *descb, int *info);

#endif
