// What Python sees of the writer's C++ kernels (model/serving/kernels.h says what each is).
#include "kernels.h"

// Each runs without the GIL, as PyTorch's own operations do: the app's other threads (the server's event loop,
// which takes students' requests and sends their text) go on while the engine computes.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using without_gil = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("pack", &pack, without_gil(), "a weight (out, in) packed in blocks of 32 outputs");
  m.def("linear", &linear, without_gil(), "residual + x times a packed weight, plus bias, then GELU if asked");
  m.def("attend_new_positions", &attend_new_positions, without_gil(),
        "each row's new position stored in its cache and attended");
  m.def("written_token_layer", &written_token_layer, without_gil(),
        "one layer of the course's Block for a written token");
}
