// The whole core tensor API.
#pragma once
#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/fused_update.h"
#include "core/ops/indexing.h"
#include "core/ops/linalg.h"
#include "core/ops/moe.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"
#include "core/memory.h"
#include "core/precision.h"
#include "core/rng.h"
#include "core/tensor.h"
