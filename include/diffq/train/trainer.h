#pragma once
/// \file trainer.h
/// The training library (`diffq::train`, target `diffq::train`): the
/// methods registry, the tasks and models of the experiments, the `Trainer`
/// and its epoch loop, the experiment runner and post-training compression.
/// See docs/architecture.md.

#include "diffq/models/models.h"
#include "diffq/train/compress.h"
#include "diffq/train/config.h"
#include "diffq/train/experiment.h"
#include "diffq/train/loop.h"
#include "diffq/train/methods.h"
#include "diffq/train/model_handle.h"
#include "diffq/train/tasks.h"
#include "diffq/train/trainer_options.h"
