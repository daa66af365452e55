// SML (German eHZ / mME meters) as configuration sees it (protocols/sml/README.md).
#include "protocols/protocol.h"

namespace mp::protocols::sml {

using acquire::Parity;

extern const Spec spec;
const Spec spec{
    .id = Id::sml,
    .name = "sml",
    .family = "sml",
    .summary = "SML 1.04 meters (Germany: eHZ, mME) through an optical IR head",
    .sources = {"serial", "tcp", "simulate"},
    .sources_note =
        "SML meters are read over \"serial\" (an IR head), \"tcp\" (an IR head on a "
        "ser2net or ESP bridge) or \"simulate\"",
    .presets = {{"sml", 9600, 8, Parity::none, 1, "SML push meters (eHZ, mME)"}},
    .serial_default = {"", 9600, 8, Parity::none, 1, "SML push meters"},
    .check = nullptr,
};

}  // namespace mp::protocols::sml
