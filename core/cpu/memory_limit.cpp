#include "core/cpu/memory_limit.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/checked_math.h"
#include "core/error.h"

namespace moegrad::core::cpu {
namespace {

constexpr std::int64_t kNoLimit = std::numeric_limits<std::int64_t>::max();

// "8589934592", "8G", "512M", "64k" -> bytes; -1 when malformed or 0.
std::int64_t parse_bytes(const std::string& text) {
  std::size_t i = 0;
  std::int64_t v = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (!mul_fits(v, 10, v) || !add_fits(v, text[i] - '0', v)) return -1;
    ++i;
  }
  if (i == 0) return -1;
  int shift = 0;
  if (i < text.size()) {
    const std::string units = "KMGT";
    const auto u = units.find(static_cast<char>(std::toupper(static_cast<unsigned char>(text[i]))));
    if (u == std::string::npos) return -1;
    shift = 10 * static_cast<int>(u + 1);
    ++i;
    if (i < text.size() && (text[i] == 'i' || text[i] == 'I')) ++i;  // "8GiB"
    if (i < text.size() && (text[i] == 'b' || text[i] == 'B')) ++i;
  }
  if (i != text.size() || v == 0) return -1;
  if (v > (kNoLimit >> shift)) return -1;
  return v << shift;
}

// A number of bytes from a one-line file (cgroup limits); -1 when absent or "max".
std::int64_t read_bytes_file(const char* path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word)) return -1;
  return parse_bytes(word);
}

std::int64_t swap_total() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("SwapTotal:", 0) != 0) continue;
    std::istringstream fields(line.substr(10));
    std::int64_t kib = 0;
    fields >> kib;
    return kib > 0 ? kib * 1024 : 0;
  }
  return 0;
}

struct Limit {
  std::int64_t bytes = kNoLimit;
  std::string source;
};

Limit machine_limit() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  const std::int64_t swap = swap_total();
  Limit l;
  std::int64_t phys = 0;
  if (pages > 0 && page > 0 && mul_fits(pages, page, phys) && add_fits(phys, swap, l.bytes)) {
    l.source = swap > 0 ? "physical memory + swap" : "physical memory, no swap";
  } else {
    l = {kNoLimit, "no limit: the machine's memory is unknown"};
  }
  // A container's cgroup may allow less than the machine has (v2, then v1).
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    const std::int64_t cg = read_bytes_file(path);
    std::int64_t cg_total = 0;
    if (cg > 0 && add_fits(cg, swap, cg_total) && cg_total < l.bytes) {
      l = {cg_total, fmt::format("the cgroup memory limit in {} + swap", path)};
      break;
    }
  }
  return l;
}

Limit default_limit() {
  if (const char* env = std::getenv("MOEGRAD_CPU_MEMORY_LIMIT"); env && *env) {
    const std::int64_t v = parse_bytes(env);
    MOEGRAD_CHECK(v > 0, "alloc", "MOEGRAD_CPU_MEMORY_LIMIT must be a byte count > 0 such as 8589934592 or 8G, got '{}'",
                  env);
    return {v, "set by MOEGRAD_CPU_MEMORY_LIMIT"};
  }
  return machine_limit();
}

std::atomic<std::int64_t> g_override{0};  // > 0: set_memory_limit's value

const Limit& environment_limit() {
  static const Limit l = default_limit();  // read once: the environment does not change under us
  return l;
}

}  // namespace

std::int64_t memory_limit() {
  const std::int64_t o = g_override.load(std::memory_order_relaxed);
  return o > 0 ? o : environment_limit().bytes;
}

std::string memory_limit_source() {
  if (g_override.load(std::memory_order_relaxed) > 0) return "set by set_memory_limit";
  return environment_limit().source;
}

void set_memory_limit(std::int64_t bytes) {
  MOEGRAD_CHECK(bytes >= 0, "set_memory_limit", "bytes must be >= 0 (0 = default), got {}", bytes);
  g_override.store(bytes, std::memory_order_relaxed);
}

std::string over_memory_limit(std::uint64_t bytes, std::uint64_t live) {
  const auto limit = static_cast<std::uint64_t>(memory_limit());
  if (bytes <= limit - std::min(live, limit)) return {};  // the common case: no strings built
  std::string how = memory_limit_source();
  if (how.rfind("set by", 0) != 0) how += "; MOEGRAD_CPU_MEMORY_LIMIT overrides it";
  const std::string limit_str = fmt::format("{} ({} bytes: {})", readable_bytes(limit), limit, how);
  if (bytes > limit) return fmt::format("more than the memory limit of {}", limit_str);
  return fmt::format("{} already in live tensors, together more than the memory limit of {}", readable_bytes(live),
                     limit_str);
}

}  // namespace moegrad::core::cpu
