// What Python sees of the writer's C++ kernels (model/serving/kernels.h says what each is).
#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pack", &pack, "a weight (out, in) packed in blocks of 32 outputs");
  m.def("linear", &linear, "residual + x times a packed weight, plus bias, then GELU if asked");
  m.def("attend_new_positions", &attend_new_positions, "each row's new position stored in its cache and attended");
  m.def("written_token_layer", &written_token_layer, "one layer of the course's Block for a written token");
}
