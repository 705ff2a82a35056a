// Errors found by kernels (an index out of range, a repeated row) cannot be thrown where they
// happen and must not cost a device-to-host synchronisation per op. A kernel records the first
// one in a small struct in mapped pinned memory; the host raises it as moegrad::Error at the
// next synchronisation point (a copy to the host, item(), to_vector(), cuda::synchronize()).
// Messages read like the CPU kernels': "[gather] index 7 out of range for dim 1 of size 4".
#pragma once
#include <cstdint>

namespace moegrad::core::cuda {

enum class DeviceErrorKind : std::int32_t {
  none = 0,
  index_out_of_range,  // "index <value> out of range for dim <lo> of size <hi>"
  class_out_of_range,  // one_hot: "class index <value> out of range for num_classes <hi>"
  row_out_of_range,    // MoE rows: "row index <value> out of range [<lo>, <hi>)"
  row_repeated,        // MoE rows: "row index <value> appears twice"
  expert_out_of_range, // assign_slots: "expert id <value> out of range [0, <hi>)"
  non_finite,          // assert_finite: "<what> contains NaN or Inf"
};

struct DeviceError {
  std::int32_t flag;  // 0 until the first error; set with atomicCAS so the first one wins
  DeviceErrorKind kind;
  const char* op;  // the op's name: a host string literal, only carried through the device
  long long value, lo, hi;
  const char* what;  // non_finite: what held the value (a host string literal) or null
};

// The device-visible pointer to the device's error record (host code passes it to kernels).
DeviceError* device_error_slot(int device);
// Throws the recorded error, if any, and clears it. Call only after the stream was synchronised.
void raise_device_error(int device);

}  // namespace moegrad::core::cuda
