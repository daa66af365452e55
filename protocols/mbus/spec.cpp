// M-Bus as configuration sees it (protocols/mbus/README.md).
#include "protocols/protocol.h"

namespace mp::protocols::mbus {

using acquire::Parity;

extern const Spec spec;
const Spec spec{
    .id = Id::mbus,
    .name = "mbus",
    .family = "mbus",
    .summary = "M-Bus meters (EN 13757-3) through a level converter",
    .sources = {"serial"},
    .sources_note = "M-Bus meters are read over \"serial\" (an M-Bus level converter)",
    .presets = {{"mbus", 2400, 8, Parity::even, 1, "M-Bus default"}},
    .serial_default = {"", 2400, 8, Parity::even, 1, "M-Bus default"},
    .check = nullptr,
};

}  // namespace mp::protocols::mbus
