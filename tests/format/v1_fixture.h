#pragma once
// The state stored in the committed version-1 fixture files
// (tests/format/fixtures/v1_*.diffq), rebuilt by a deterministic factory so
// that a test can assert that version-1 files still load to exactly it.
#include <string>

#include "diffq/format.h"
#include "diffq/quantized_state.h"

namespace diffq_test {

/// The state of the version-1 fixtures: float32, float16 (and bfloat16 /
/// float64 dtypes), uniform, DiffQ groups (group size 0 and 4, mixed widths),
/// LSQ, product quantization, tied aliases, options. Built from fixed values
/// and std::mt19937 draws only (no distributions), so it is the same with
/// every compiler and standard library.
diffq::QuantizedState v1_fixture_state();

/// File name (in tests/format/fixtures/) of the fixture written with `coding`.
std::string v1_fixture_name(diffq::EntropyCoding coding);

}  // namespace diffq_test
