// Checks what nvcc put in edge_ls_kernels.fatbin, since this machine has no GPU to load it on and
// no cuobjdump: one CUDA ELF (cubin) per requested SM arch, PTX for the newest one, and every
// kernel the README documents present (unmangled) in each of them.
//
// usage: test_fatbin FATBIN ARCHS_CSV PTX_ARCH
// Layout (uncompressed fatbin, as built with --no-compress): a 16-byte header {u32 magic
// 0xBA55ED50, u16 version, u16 header size, u64 size of the entries}, then entries {u16 kind
// (1 = PTX, 2 = ELF), u16 version, u32 header size, u64 payload size, ..., u32 arch at +28}, each
// followed by its payload.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"

namespace {

const char* const kKernels[] = {
    "edge_ls_preprocess_u8_f32", "edge_ls_preprocess_u8_f16", "edge_ls_preprocess_u16_f32",
    "edge_ls_preprocess_u16_f16", "edge_ls_sigmoid", "edge_ls_hann_window", "edge_ls_blend_tiles_f32",
    "edge_ls_blend_tiles_f16", "edge_ls_blend_resolve", "edge_ls_confidence"};

template <typename T>
T read_at(const std::vector<char>& data, size_t offset) {
  T v{};
  if (offset + sizeof(T) <= data.size()) std::memcpy(&v, data.data() + offset, sizeof(T));
  return v;
}

bool contains(const std::vector<char>& data, size_t begin, size_t end, const std::string& needle) {
  const auto first = data.begin() + static_cast<std::ptrdiff_t>(begin);
  const auto last = data.begin() + static_cast<std::ptrdiff_t>(end);
  return std::search(first, last, needle.begin(), needle.end()) != last;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s FATBIN ARCHS_CSV PTX_ARCH\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  const std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(data.size() > 16);
  CHECK(read_at<uint32_t>(data, 0) == 0xBA55ED50u);
  const size_t header = read_at<uint16_t>(data, 6);
  const size_t end = header + read_at<uint64_t>(data, 8);
  CHECK(end <= data.size());

  std::set<unsigned> want_elf;
  std::stringstream csv(argv[2]);
  for (std::string arch; std::getline(csv, arch, ',');) want_elf.insert(static_cast<unsigned>(std::stoul(arch)));
  const unsigned want_ptx = static_cast<unsigned>(std::stoul(argv[3]));

  std::set<unsigned> elf, ptx;
  for (size_t at = header; at + 32 <= end;) {
    const uint16_t kind = read_at<uint16_t>(data, at);
    const size_t entry_header = read_at<uint32_t>(data, at + 4);
    const size_t payload = read_at<uint64_t>(data, at + 8);
    const unsigned arch = read_at<uint32_t>(data, at + 28);
    const size_t begin = at + entry_header, stop = begin + payload;
    if (entry_header < 32 || stop > end) {
      CHECK(!"entry runs past the end of the fatbin");
      break;
    }
    if (kind == 2) {
      elf.insert(arch);
      CHECK(contains(data, begin, begin + 4, "\x7f" "ELF"));
      CHECK(read_at<uint16_t>(data, begin + 18) == 190);  // e_machine EM_CUDA
    } else if (kind == 1) {
      ptx.insert(arch);
    }
    for (const char* kernel : kKernels) {
      const bool found = contains(data, begin, stop, kind == 1 ? std::string(".entry ") + kernel : kernel);
      if (!found) std::fprintf(stderr, "kernel %s missing from entry kind %u arch %u\n", kernel, kind, arch);
      CHECK(found);
    }
    std::printf("entry: %s sm_%u, %zu bytes\n", kind == 2 ? "ELF" : (kind == 1 ? "PTX" : "?"), arch, payload);
    at = stop;
  }
  CHECK(elf == want_elf);
  CHECK(ptx == std::set<unsigned>{want_ptx});
  return check::report("test_fatbin");
}
