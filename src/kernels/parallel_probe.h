#pragma once
// How many threads the library's own parallel regions run on. The kernels
// use at::parallel_for, a header template: it runs on LibTorch's intra-op
// threads only in translation units built with OpenMP, and silently runs
// every range on the calling thread otherwise. This probe, built like the
// kernels, lets a test catch a build that lost it. Internal to the library.
namespace diffq {
namespace kernels {

/// Distinct threads that ran a part of one at::parallel_for region of 64
/// ranges (each range waits for the others to start, up to 1 s): equals
/// torch::get_num_threads() (at most 64) when the kernels are parallel, 1
/// when they are not.
int parallel_region_threads();

}  // namespace kernels
}  // namespace diffq
