// The layers floor in one include.
#pragma once
#include "autograd/autograd.h"
#include "layers/activation.h"
#include "layers/geglu.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/lmoe_experts.h"
#include "layers/module.h"
#include "layers/rms_norm.h"
#include "layers/sequential.h"
#include "layers/st_expert.h"
#include "layers/state_dict.h"
#include "layers/zeta_experts.h"
