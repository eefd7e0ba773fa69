// Writes the version-1 fixture files (tests/format/fixtures/v1_*.diffq) from
// `v1_fixture_state()`. The committed files were written by this program at
// commit "Format: version-1 fixture files" with the version-1 writer; the
// bytes are kept as committed and must NOT be regenerated with a newer
// writer (that would make them files of the newer version). The program
// therefore refuses to run when the library writes another version.
// Build: `cmake --build <build> --target make_v1_fixture`; run with the
// output directory as argument.
#include <cstdio>
#include <string>

#include "diffq/format.h"
#include "v1_fixture.h"

int main(int argc, char** argv) {
  if (diffq::kFormatVersion != 1) {
    std::fprintf(stderr,
                 "make_v1_fixture: this library writes format version %u; the fixtures are "
                 "version-1 files and are kept as committed\n",
                 static_cast<unsigned>(diffq::kFormatVersion));
    return 2;
  }
  const std::string dir = argc > 1 ? argv[1] : ".";
  const diffq::QuantizedState state = diffq_test::v1_fixture_state();
  for (auto coding : {diffq::EntropyCoding::kNone, diffq::EntropyCoding::kZstd,
                      diffq::EntropyCoding::kRans}) {
    const auto bytes =
        diffq::serialize(state, diffq::SaveOptions().entropy_coding(coding).creation_time(0).threads(1));
    const std::string path = dir + "/" + diffq_test::v1_fixture_name(coding);
    std::FILE* out = std::fopen(path.c_str(), "wb");
    if (out == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), out) != bytes.size()) {
      std::fprintf(stderr, "make_v1_fixture: cannot write %s\n", path.c_str());
      return 1;
    }
    std::fclose(out);
    std::printf("%s: %zu bytes\n", path.c_str(), bytes.size());
  }
  return 0;
}
