/* debug_fault.cu - a kernel that faults on purpose, for the tests of the
 * library's sticky-fault handling (bp_debug_inject_device_fault). Never
 * launched in normal operation. */
#include "kernels.cuh"

/* Writes through an address no allocation owns: the device reports an
 * illegal address, a sticky fault that corrupts the process's CUDA context. */
__global__ void bp_debug_fault_kernel(int *bad) { bad[threadIdx.x] = 1; }

extern "C" cudaError_t bp_launch_debug_fault(cudaStream_t stream) {
  bp_debug_fault_kernel<<<1, 32, 0, stream>>>(reinterpret_cast<int *>(uintptr_t{0x10}));
  return cudaGetLastError();
}
