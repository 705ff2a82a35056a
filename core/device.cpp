#include "core/device.h"

#include <fmt/format.h>

#include "core/error.h"

namespace moegrad::core {

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos && text.size() < 9)
    return cuda(std::stoi(text.substr(5)));
  fail("device", "unknown device '{}' (expected cpu, cuda or cuda:N)", text);
}

std::string Device::str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }

}  // namespace moegrad::core
