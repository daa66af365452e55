#include "cli/cli.h"

int main(int argc, char** argv) { return mp::cli::main(argc, argv); }
