// The `meterpipe` command line.
#pragma once

namespace mp::cli {
int main(int argc, char** argv);
}
