#include "protocols/registry.h"

namespace mp::protocols {

#define MP_PROTOCOL(ns, spec, runtime) \
  namespace ns {                       \
  extern const Spec spec;              \
  extern const Runtime runtime;        \
  }
#include "protocols/list.h"
#undef MP_PROTOCOL

const Runtime& runtime(const Spec& s) {
#define MP_PROTOCOL(ns, spec, runtime) \
  if (&s == &ns::spec) return ns::runtime;
#include "protocols/list.h"
#undef MP_PROTOCOL
  static const Runtime none{};
  return none;  // a Spec not from all(): nothing to run
}

}  // namespace mp::protocols
