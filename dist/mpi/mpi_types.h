// moegrad's dtypes and reductions as MPI handles (lookup tables, not switches), and the row
// datatype that keeps MPI's int counts small: a contiguous type of one row's bytes, so counts
// and displacements are rows.
#pragma once
#include <mpi.h>

#include <cstdint>

#include "core/dtype.h"
#include "dist/process_group.h"

namespace moegrad::dist::mpi {

MPI_Datatype datatype_of(core::DType d);
MPI_Op op_of(Reduction r);
const char* reduction_name(Reduction r);

// A committed MPI_Type_contiguous(bytes, MPI_BYTE), freed with this object.
class RowType {
 public:
  RowType(const char* op, std::int64_t bytes);
  ~RowType();
  RowType(const RowType&) = delete;
  RowType& operator=(const RowType&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// value as an MPI int count, or "[op] <what> of N does not fit MPI's int counts".
int to_int(const char* op, const char* what, std::int64_t value);

}  // namespace moegrad::dist::mpi
