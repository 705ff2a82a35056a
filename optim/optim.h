// The whole optim floor: SGD, Adam, AdamW, their state under PyTorch's names, gradient clipping
// and learning-rate schedules.
#pragma once
#include "optim/adam.h"
#include "optim/clip.h"
#include "optim/module_state.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
