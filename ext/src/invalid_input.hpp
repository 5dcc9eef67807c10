// Bad arguments. nanobind raises a std::invalid_argument, this one included, as Python's ValueError.
#pragma once

#include <stdexcept>

namespace rerank {

struct InvalidInput : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

}  // namespace rerank
