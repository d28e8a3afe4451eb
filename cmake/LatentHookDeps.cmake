# Finds every dependency of LatentHook and exposes them as one interface target, lh::deps.
# Debian 12 packages: libopenmpi-dev libhdf5-openmpi-dev libscalapack-openmpi-dev
# libopenblas-dev liblapacke-dev libcyaml-dev libpcre2-dev libjansson-dev libplplot-dev
# plplot-driver-cairo liblbfgs-dev (+ libcriterion-dev
# for the tests).
find_package(PkgConfig REQUIRED)

find_package(MPI REQUIRED COMPONENTS C)

# Parallel HDF5: without HDF5_PREFER_PARALLEL FindHDF5 picks a serial installation first.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR
    "LatentHook needs a parallel (MPI) HDF5, but CMake found a serial one "
    "(${HDF5_C_INCLUDE_DIRS}). On Debian: apt-get install libhdf5-openmpi-dev")
endif()

# Debian's ScaLAPACK CMake config points at a library path that does not exist: use
# pkg-config (the openmpi flavour bundles BLACS).
pkg_check_modules(SCALAPACK REQUIRED IMPORTED_TARGET scalapack-openmpi)
# OpenBLAS through pkg-config gives its own cblas.h, which declares openblas_get_corename().
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(LAPACKE REQUIRED IMPORTED_TARGET lapacke)
pkg_check_modules(CYAML REQUIRED IMPORTED_TARGET libcyaml)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
# Figures: PLplot's C library (libplplot-dev); PNG output needs its cairo driver at run time
# (plplot-driver-cairo).
pkg_check_modules(PLPLOT REQUIRED IMPORTED_TARGET plplot)
# L-BFGS for the probes (liblbfgs-dev: Okazaki's libLBFGS, More-Thuente line search).
pkg_check_modules(LBFGS REQUIRED IMPORTED_TARGET liblbfgs)
# Job files: libyaml (libyaml-dev, libcyaml's own parser) keeps the document tree with line
# numbers for --set overrides and messages; libcyaml checks it against the schema.
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
# SHA-256 content digests of the batch runner's step records: OpenSSL's libcrypto (libssl-dev).
pkg_check_modules(CRYPTO REQUIRED IMPORTED_TARGET libcrypto)

add_library(lh_deps INTERFACE)
add_library(lh::deps ALIAS lh_deps)
target_include_directories(lh_deps SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(lh_deps INTERFACE ${HDF5_C_DEFINITIONS} PCRE2_CODE_UNIT_WIDTH=8)
target_link_libraries(lh_deps INTERFACE
  PkgConfig::SCALAPACK ${HDF5_C_LIBRARIES} MPI::MPI_C
  PkgConfig::LAPACKE PkgConfig::OPENBLAS
  PkgConfig::CYAML PkgConfig::PCRE2 PkgConfig::JANSSON PkgConfig::PLPLOT PkgConfig::LBFGS
  PkgConfig::YAML PkgConfig::CRYPTO m)
