#pragma once
// The thread pools' wait settings of the `diffq` executable.

namespace diffq {
namespace cli {

/// The settings a run with more than one intra-op thread needs, and their
/// values: GOMP_SPINCOUNT=3000 (LibTorch's OpenMP threads spin 3000 rounds,
/// not libgomp's default 300 000, after a parallel region, then sleep) and
/// OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS's own threads spin 2^4 cycles, not
/// 2^28, after a matrix product). Long-spinning pools take the two cores
/// from each other (on the 2-core benchmark machine a plain two-thread step
/// went from 354.7 ms to 172.3 ms with both threads sleeping at once); a
/// short spin still catches the next of many short regions without a
/// wake-up (DiffQ's two-thread step: 184.7 ms with OMP_WAIT_POLICY=PASSIVE,
/// 152.0 ms with the short spin; docs/benchmarks/README.md). A user's
/// OMP_WAIT_POLICY or GOMP_SPINCOUNT counts as the OpenMP setting.
///
/// Both libraries read them once, when they load, so they cannot be set from
/// inside the process: when the command line asks for `--threads` N > 1
/// and either is missing from the environment, this re-executes the program
/// (/proc/self/exe, same arguments) with the missing ones added. A value
/// the user set is kept; DIFFQ_KEEP_THREAD_ENV=1 turns this off. Returns
/// (doing nothing) when there is nothing to do or the re-execution fails.
/// Call first in main(), before any thread exists.
void use_sleeping_thread_pools(int argc, char** argv);

}  // namespace cli
}  // namespace diffq
