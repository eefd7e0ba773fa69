#pragma once
/// \file diffq.h
/// Everything of the diffq library.

#include "diffq/batchnorm.h"
#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/float_state.h"
#include "diffq/lsq_quantizer.h"
#include "diffq/model_file.h"
#include "diffq/model_ref.h"
#include "diffq/quant_noise.h"
#include "diffq/quantized_state.h"
#include "diffq/quantizer.h"
#include "diffq/restore.h"
#include "diffq/uniform_quantizer.h"
#include "diffq/version.h"
