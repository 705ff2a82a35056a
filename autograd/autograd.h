// The autograd floor in one include.
#pragma once
#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"
#include "autograd/variable.h"
