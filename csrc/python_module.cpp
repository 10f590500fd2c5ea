// The Python module gkd_ext._C: empty, since importing it is what runs the static op
// registrations (csrc/gkd_ext.cpp and the kernel files). No pybind11 needed, which keeps compile
// times short. The CMake library for C++ users leaves this file out.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
