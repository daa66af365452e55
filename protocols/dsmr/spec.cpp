// P1 / DSMR as configuration sees it (protocols/dsmr/README.md).
#include "protocols/protocol.h"

namespace mp::protocols::dsmr {

using acquire::Parity;

extern const Spec spec;
const Spec spec{
    .id = Id::dsmr,
    .name = "dsmr",
    .family = "dsmr",
    .summary = "P1 port telegrams: DSMR 2.2-5 (NL), e-MUCS (BE), Smarty (LU, encrypted)",
    .sources = {"serial", "tcp", "simulate", "file"},
    .sources_note = "P1 telegrams come from \"serial\", \"tcp\", \"simulate\" or \"file\"",
    .presets = {{"dsmr5", 115200, 8, Parity::none, 1, "DSMR 5.x"},
                {"dsmr4", 115200, 8, Parity::none, 1, "DSMR 4.x"},
                {"fluvius", 115200, 8, Parity::none, 1, "Belgian e-MUCS (Fluvius)"},
                {"dsmr3", 9600, 7, Parity::even, 1, "DSMR 3.0"},
                {"dsmr2", 9600, 7, Parity::even, 1, "DSMR 2.2"}},
    .serial_default = {"", 115200, 8, Parity::none, 1, "DSMR 4/5"},
    .check = nullptr,
};

}  // namespace mp::protocols::dsmr
