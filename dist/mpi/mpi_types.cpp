#include "dist/mpi/mpi_types.h"

#include <array>
#include <climits>

#include "dist/mpi/mpi_runtime.h"

namespace moegrad::dist::mpi {

static_assert(static_cast<int>(core::DType::f32) == 0 && static_cast<int>(core::DType::u8) == 4,
              "datatype_of's table follows DType's order");
static_assert(static_cast<int>(Reduction::sum) == 0 && static_cast<int>(Reduction::min) == 2,
              "op_of's table follows Reduction's order");

MPI_Datatype datatype_of(core::DType d) {
  // Indexed by DType's value: f32, f64, i64, b8 (one byte, reduced as an unsigned byte), u8.
  static const std::array<MPI_Datatype, 5> table{MPI_FLOAT, MPI_DOUBLE, MPI_INT64_T, MPI_UINT8_T, MPI_UINT8_T};
  const auto i = static_cast<std::size_t>(d);
  MOEGRAD_CHECK(i < table.size(), "dist", "dtype {} has no MPI datatype", static_cast<int>(i));
  return table[i];
}

MPI_Op op_of(Reduction r) {
  static const std::array<MPI_Op, 3> table{MPI_SUM, MPI_MAX, MPI_MIN};  // Reduction's order
  return table[static_cast<std::size_t>(r)];
}

const char* reduction_name(Reduction r) {
  static constexpr std::array<const char*, 3> names{"sum", "max", "min"};
  return names[static_cast<std::size_t>(r)];
}

int to_int(const char* op, const char* what, std::int64_t value) {
  MOEGRAD_CHECK(value >= 0 && value <= INT_MAX, op, "{} of {} does not fit MPI's int counts (at most {})", what, value,
                INT_MAX);
  return static_cast<int>(value);
}

RowType::RowType(const char* op, std::int64_t bytes) {
  MOEGRAD_MPI_CHECK(MPI_Type_contiguous(to_int(op, "a row's byte count", bytes), MPI_BYTE, &type_), op);
  MOEGRAD_MPI_CHECK(MPI_Type_commit(&type_), op);
}

RowType::~RowType() {
  if (type_ != MPI_DATATYPE_NULL && initialized()) MPI_Type_free(&type_);
}

}  // namespace moegrad::dist::mpi
