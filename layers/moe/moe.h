// The mixture-of-experts modules in one include.
#pragma once
#include "layers/moe/coor_descent.h"
#include "layers/moe/gate_result.h"
#include "layers/moe/lmoe_moe.h"
#include "layers/moe/moe_layer.h"
#include "layers/moe/moe_router.h"
#include "layers/moe/pipeline.h"
#include "layers/moe/routing.h"
#include "layers/moe/st_experts.h"
#include "layers/moe/st_moe.h"
#include "layers/moe/top2_gating.h"
#include "layers/moe/top_n_gating.h"
